"""A real S3 test server (moto_server) in its own process, and a client for it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.procs import free_port, running


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[dict[str, str]]:
    """Start moto_server on a free port; yields the AWS_* environment that reaches it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(args, log_dir / "moto.log", ready_url=f"{endpoint}/moto-api/", timeout=60):
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
