"""Build the control plane's binaries from Go modules, once per version.

    python -m testcluster.build [--bin-root DIR]        build what is missing
    python -m testcluster.build --update-modules         rewrite the wrapper go.mod files

`k8s.io/kubernetes` requires its staging modules (k8s.io/api, k8s.io/apiserver, …) at
v0.0.0 and replaces them with `./staging/…`, which only works inside its own
repository, so `go install k8s.io/kubernetes/cmd/...@v1.x` refuses. The wrapper module
in `go/kubernetes` requires the release and replaces each staging module with its
published v0.x twin; `--update-modules` derives that list from the release's own
go.mod. etcd's server module builds the same way from `go/etcd`.

Binaries land in `<bin-root>/kubernetes-v<version>/` and `<bin-root>/etcd-v<version>/`
with a `build.json` recording the time and sizes; a directory that is complete for
its version and module sums is reused as is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from testcluster import versions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_BIN_ROOT = REPO / ".cluster" / "bin"
KUBE_MODULE = HERE / "go" / "kubernetes"
ETCD_MODULE = HERE / "go" / "etcd"


class BuildError(Exception):
    pass


def kubernetes_dir(bin_root: Path) -> Path:
    return bin_root / f"kubernetes-v{versions.KUBERNETES}"


def etcd_dir(bin_root: Path) -> Path:
    return bin_root / f"etcd-v{versions.ETCD}"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is not on PATH (needed once to build the test cluster)")
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = "-buildvcs=false -mod=readonly"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _sums(module: Path) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((module / name).read_bytes())
    return digest.hexdigest()


def _complete(target: Path, names: tuple[str, ...], module: Path) -> bool:
    stamp = target / "build.json"
    if not stamp.is_file() or not all((target / n).is_file() for n in names):
        return False
    try:
        return bool(json.loads(stamp.read_text())["sums"] == _sums(module))
    except (ValueError, KeyError):
        return False


def _kube_ldflags() -> str:
    major, minor, _ = versions.KUBERNETES.split(".")
    stamps = {
        "gitVersion": f"v{versions.KUBERNETES}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def _check_pin(module: Path, path: str, version: str) -> None:
    text = (module / "go.mod").read_text()
    if not re.search(rf"^\s*(require\s+)?{re.escape(path)} v{re.escape(version)}\b", text, re.M):
        raise BuildError(
            f"{module / 'go.mod'} does not require {path} v{version} "
            "(run: python -m testcluster.build --update-modules)"
        )


def _build(
    module: Path, target: Path, packages: list[str], names: tuple[str, ...], ldflags: str
) -> None:
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    # One package is written under its binary's name: etcd's main package path ends in
    # "/v3", which `go build -o DIR/` would name "server".
    output = str(tmp / names[0]) if len(packages) == 1 else str(tmp) + "/"
    command = [_go(), "build", "-trimpath", "-ldflags", ldflags, "-o", output, *packages]
    result = subprocess.run(command, cwd=module, env=_go_env(), stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise BuildError(f"go build in {module} failed:\n{tail}")
    seconds = round(time.monotonic() - started, 1)
    sizes = {n: (tmp / n).stat().st_size for n in names}
    (tmp / "build.json").write_text(
        json.dumps({"sums": _sums(module), "seconds": seconds, "sizes": sizes}, indent=2) + "\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    total = sum(sizes.values()) / 2**20
    print(f"built {', '.join(names)} in {seconds:.0f} s ({total:.0f} MiB)", flush=True)


def build(bin_root: Path = DEFAULT_BIN_ROOT) -> tuple[Path, Path]:
    """Build whatever is missing; return the kubernetes and etcd binary directories."""
    kube, etcd = kubernetes_dir(bin_root), etcd_dir(bin_root)
    _check_pin(KUBE_MODULE, "k8s.io/kubernetes", versions.KUBERNETES)
    _check_pin(ETCD_MODULE, "go.etcd.io/etcd/server/v3", versions.ETCD)
    if not _complete(etcd, ("etcd",), ETCD_MODULE):
        print(f"building etcd v{versions.ETCD} (a cold build takes a few minutes)…", flush=True)
        _build(ETCD_MODULE, etcd, ["go.etcd.io/etcd/server/v3"], ("etcd",), "-s -w")
    if not _complete(kube, versions.KUBERNETES_COMMANDS, KUBE_MODULE):
        print(
            f"building Kubernetes v{versions.KUBERNETES} "
            f"({', '.join(versions.KUBERNETES_COMMANDS)}; a cold build takes 10-25 minutes on 2 cores)…",
            flush=True,
        )
        packages = [f"k8s.io/kubernetes/cmd/{name}" for name in versions.KUBERNETES_COMMANDS]
        _build(KUBE_MODULE, kube, packages, versions.KUBERNETES_COMMANDS, _kube_ldflags())
    return kube, etcd


def _release_staging_modules(version: str) -> list[str]:
    """The modules `k8s.io/kubernetes@v<version>` replaces with its ./staging tree."""
    out = subprocess.run(
        [_go(), "mod", "download", "-json", f"k8s.io/kubernetes@v{version}"],
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    return re.findall(r"^\s*(\S+)\s+=>\s+\./staging/", gomod, re.M)


def update_modules() -> None:
    major_minor_patch = versions.KUBERNETES.split(".", 1)[1]
    staging = _release_staging_modules(versions.KUBERNETES)
    replaces = "\n".join(f"\t{m} => {m} v0.{major_minor_patch}" for m in staging)
    (KUBE_MODULE / "go.mod").write_text(
        "module pilotage.dev/testcluster/kubernetes\n\ngo 1.26.0\n\n"
        f"require k8s.io/kubernetes v{versions.KUBERNETES}\n\nreplace (\n{replaces}\n)\n"
    )
    (ETCD_MODULE / "go.mod").write_text(
        "module pilotage.dev/testcluster/etcd\n\ngo 1.26.0\n\n"
        f"require go.etcd.io/etcd/server/v3 v{versions.ETCD}\n"
    )
    env = _go_env() | {"GOFLAGS": "-buildvcs=false -mod=mod"}
    for module in (KUBE_MODULE, ETCD_MODULE):
        subprocess.run([_go(), "mod", "tidy"], cwd=module, check=True, env=env)
    print(f"wrapper modules pinned to kubernetes v{versions.KUBERNETES}, etcd v{versions.ETCD}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testcluster.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bin-root", type=Path, default=DEFAULT_BIN_ROOT)
    parser.add_argument(
        "--update-modules", action="store_true", help="rewrite the wrapper go.mod files"
    )
    args = parser.parse_args(argv)
    try:
        if args.update_modules:
            update_modules()
        kube, etcd = build(args.bin_root)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"testcluster build: {exc}", file=sys.stderr)
        return 1
    print(f"binaries: {kube} {etcd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
