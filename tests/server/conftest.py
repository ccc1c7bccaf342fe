"""Fixtures: real trained models on disk and real `pilotage serve` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server.artifacts import Artifact, build_churn, build_diabetes, build_iris
from tests.support.procs import Process, free_port, pilotage, running


@dataclass
class Server:
    url: str
    process: Process
    artifact: Artifact

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")


StartServer = Callable[..., AbstractContextManager[Server]]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    root = tmp_path_factory.mktemp("models")
    return {
        "iris": build_iris(root / "iris"),
        "churn": build_churn(root / "churn"),
        "diabetes": build_diabetes(root / "diabetes"),
    }


@contextmanager
def serve(
    artifact: Artifact, log_dir: Path, *extra: str, uri: str | None = None
) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    model_uri = uri or artifact.uri
    args = pilotage("serve", "--model-uri", model_uri, "--port", str(port), *extra)
    log = log_dir / f"serve-{artifact.card.name}-{port}.log"
    with running(args, log, ready_url=f"{url}/v2/health/ready", timeout=60) as proc:
        yield Server(url, proc, artifact)


@pytest.fixture(scope="module")
def start_server(
    models: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory
) -> StartServer:
    log_dir = tmp_path_factory.mktemp("logs")

    def start(model: str, *extra: str) -> AbstractContextManager[Server]:
        return serve(models[model], log_dir, *extra)

    return start
