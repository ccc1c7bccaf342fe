"""`pilotage route` refuses bad starts with one clear line and exit status 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.procs import free_port, pilotage


def route(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pilotage("route", *args), capture_output=True, text=True, timeout=60)


def test_bad_starts_are_one_line_errors(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        "deployment: iris\nmode: canary\nvariants:\n  - {name: stable, url: 'http://a:1', weight: 90, version: '1'}\n"
    )
    port = str(free_port())
    bad = route("--config", str(config), "--port", port)
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == f"pilotage route: {config}: variants: weights must sum to 100, got 90 (stable=90)"
    )

    config.write_text(config.read_text().replace("weight: 90", "weight: 100"))
    no_token = route("--config", str(config), "--port", port, "--admin-port", str(free_port()))
    assert no_token.returncode == 2 and "--admin-port needs a token" in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1

    missing = route("--config", str(tmp_path / "nope.yaml"), "--port", port)
    assert missing.returncode == 2 and "cannot read routing file" in missing.stderr

    no_connections = route(
        "--config", str(config), "--port", port, "--max-connections-per-upstream", "0"
    )
    assert no_connections.returncode == 2
    assert no_connections.stderr.strip() == (
        "pilotage route: --max-connections-per-upstream must be at least 1, got 0"
    )

    for flag, value, least in (
        ("--shadow-queue", "0", 1),
        ("--shadow-workers", "0", 1),
        ("--recent-answers", "-1", 0),
    ):
        refused = route("--config", str(config), "--port", port, flag, value)
        assert refused.returncode == 2
        assert (
            refused.stderr.strip()
            == f"pilotage route: {flag} must be at least {least}, got {value}"
        )
