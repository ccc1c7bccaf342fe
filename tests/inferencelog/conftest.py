from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import moto_server


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with moto_server(tmp_path) as env:
        yield env
