"""Artifact and data URIs: ``file://``, ``pvc://CLAIM/path``, ``s3://bucket/key``, ``https://``.

``pvc://CLAIM/path`` is a PersistentVolumeClaim mounted at ``$PILOTAGE_PVC_ROOT/CLAIM``
(default ``/mnt/pvc``). ``s3://`` talks to any S3-compatible store through boto3, which
reads the endpoint and credentials from the usual ``AWS_*`` variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``).
``https://`` (and ``http://``) is read only.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

SCHEMES = ("file", "pvc", "s3", "https", "http")
HTTP_TIMEOUT_S = 30.0


class StorageError(Exception):
    """A URI that cannot be read or written, with the reason in one line."""


def _parse(uri: str) -> tuple[str, str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        schemes = ", ".join(s + "://" for s in SCHEMES)
        if not parsed.scheme and uri:
            raise StorageError(
                f"{uri!r} is a path, not a URI: did you mean {Path(uri).absolute().as_uri()}? "
                f"(URIs start with one of {schemes})"
            )
        raise StorageError(
            f"unsupported URI scheme {parsed.scheme or '(none)'!r} in {uri!r}; use one of {schemes}"
        )
    return parsed.scheme, parsed.netloc, parsed.path


# A PersistentVolumeClaim's name is a DNS subdomain (RFC 1123).
_CLAIM = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def confined(base: Path, relative: str, what: str) -> Path:
    """``base / relative`` with symlinks resolved, refused unless it stays inside ``base``.

    ``..`` segments, an absolute ``relative`` and a symlink anywhere on the way that leads
    out of ``base`` (itself resolved, so a base that is a link still works) are all
    refused with a StorageError naming ``what``.
    """
    root = base.resolve()
    target = (base / relative.lstrip("/")).resolve()
    if target != root and not target.is_relative_to(root):
        raise StorageError(f"{what} leads outside {base} (through '..' or a symbolic link)")
    return target


def local_path(uri: str) -> Path | None:
    """The local filesystem path behind a ``file://`` or ``pvc://`` URI, else None.

    A ``pvc://`` path is confined to its claim's mount (``confined``): ``pvc://../x``,
    ``pvc://claim/../../x`` and a link inside the claim that points out of it are refused.
    """
    scheme, netloc, path = _parse(uri)
    if scheme == "file":
        return Path(netloc + path) if netloc else Path(path)
    if scheme == "pvc":
        if not _CLAIM.fullmatch(netloc) or len(netloc) > 253:
            raise StorageError(
                f"{uri}: {netloc!r} is not a PersistentVolumeClaim name (pvc://CLAIM/path)"
            )
        root = Path(os.environ.get("PILOTAGE_PVC_ROOT", "/mnt/pvc"))
        return confined(root / netloc, path, uri)
    return None


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


S3_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
)
"""What ``credentials`` may hold: the ``AWS_*`` variables' names; those given replace the
environment's for this one client."""


def _s3_client(credentials: Mapping[str, str] | None = None) -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise StorageError("s3:// needs boto3, which is not installed") from exc
    if not credentials:
        return boto3.client("s3")
    return boto3.client(
        "s3",
        aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        endpoint_url=credentials.get("AWS_ENDPOINT_URL"),
        region_name=credentials.get("AWS_REGION"),
    )


READ_TIMEOUT_ENV = "PILOTAGE_READ_TIMEOUT_SECONDS"
DEFAULT_READ_TIMEOUT_S = 600.0
_BLOCK = 1 << 20


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, for an error message."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def open_regular(path: Path, uri: str) -> BinaryIO:
    """Open a regular file for reading; anything else is a StorageError before a byte is read.

    The file is opened without blocking, so a FIFO without a writer does not hang here,
    and refused after ``fstat``: a FIFO would block the reader forever, a device such as
    ``/dev/zero`` never ends.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise StorageError(f"cannot read {uri}: not a regular file ({file_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_timeout() -> float:
    """Seconds a whole remote read may take: ``$PILOTAGE_READ_TIMEOUT_SECONDS`` (600)."""
    raw = os.environ.get(READ_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_READ_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise StorageError(f"{READ_TIMEOUT_ENV}: must be a positive number of seconds, got {raw!r}")
    return value


def _copy(source: Any, sink: BinaryIO, uri: str, deadline: float) -> None:
    """Copy in blocks until the source ends; a read past ``deadline`` is a StorageError
    (the socket timeout only bounds one read, and a server may drip a byte at a time)."""
    # read1 returns what has arrived (up to a block); read(n) would wait for all n bytes.
    read = getattr(source, "read1", None) or (lambda n: source.read(min(n, 1 << 16)))
    while True:
        block = read(_BLOCK)
        if not block:
            return
        sink.write(block)
        if time.monotonic() > deadline:
            raise StorageError(
                f"cannot read {uri}: not finished after {read_timeout():g} s ({READ_TIMEOUT_ENV})"
            )


def download(uri: str, sink: BinaryIO, credentials: Mapping[str, str] | None = None) -> None:
    """Stream one object into ``sink`` in blocks, bounded in time (read_timeout);
    ``credentials`` (S3_KEYS) replace the environment's for an ``s3://`` URI."""
    scheme, netloc, path = _parse(uri)
    deadline = time.monotonic() + read_timeout()
    local = local_path(uri)
    if local is not None:
        with open_regular(local, uri) as f:
            try:
                _copy(f, sink, uri, deadline)
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from exc
        return
    if scheme == "s3":
        try:
            client = _s3_client(credentials)
            body = client.get_object(Bucket=netloc, Key=path.lstrip("/"))["Body"]
            _copy(body, sink, uri, deadline)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc
        return
    try:
        with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S) as resp:
            _copy(resp, sink, uri, deadline)
    except urllib.error.HTTPError as exc:
        raise StorageError(f"cannot read {uri}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"cannot read {uri}: {reason}") from exc


def read_bytes(uri: str, credentials: Mapping[str, str] | None = None) -> bytes:
    """Read one object (a local one must be a regular file; see open_regular);
    ``credentials`` (S3_KEYS) replace the environment's for an ``s3://`` URI."""
    scheme, netloc, path = _parse(uri)
    local = local_path(uri)
    if local is not None:
        with open_regular(local, uri) as f:
            try:
                return f.read()
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    if scheme == "s3":
        try:
            obj = _s3_client(credentials).get_object(Bucket=netloc, Key=path.lstrip("/"))
            return bytes(obj["Body"].read())
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc
    try:
        with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise StorageError(f"cannot read {uri}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"cannot read {uri}: {reason}") from exc


def fetch_directory(uri: str, names: list[str], cache_dir: Path) -> Path:
    """Make the named files of a directory URI available locally and return the folder.

    Local URIs are used in place; remote ones are downloaded into ``cache_dir``.
    """
    local = local_path(uri)
    if local is not None:
        if not local.is_dir():
            raise StorageError(f"{uri} is not a directory")
        return local
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (cache_dir / name).write_bytes(read_bytes(join(uri, name)))
    return cache_dir


def publish_directory(source: Path, uri: str) -> None:
    """Copy a finished local directory to ``uri`` so that readers never see half of it.

    Locally the files are staged beside the target and renamed into place; on S3 the
    files are uploaded in sorted order except ``model.json``, which goes last so that a
    card is never visible without its model.
    """
    scheme, netloc, path = _parse(uri)
    files = sorted(p for p in source.iterdir() if p.is_file())
    local = local_path(uri)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{local.name}.", dir=local.parent))
        try:
            for f in files:
                shutil.copy2(f, staging / f.name)
            if local.exists():
                shutil.rmtree(local)
            staging.rename(local)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"cannot write {uri}: {exc.strerror or exc}") from exc
        return
    if scheme != "s3":
        raise StorageError(f"{scheme}:// is read only; write artifacts to file://, pvc:// or s3://")
    client = _s3_client()
    ordered = [f for f in files if f.name != "model.json"] + [
        f for f in files if f.name == "model.json"
    ]
    try:
        for f in ordered:
            client.upload_file(str(f), netloc, join(path.lstrip("/"), f.name))
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc
