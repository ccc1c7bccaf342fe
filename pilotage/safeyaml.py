"""YAML text read with bounds: size, alias expansion and nesting are limited, errors are
one line. Shared by the manifests reader (``pilotage.api``) and the router's routing
documents, without the resource models (no pydantic), so the router does not load them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pilotage.storage import file_kind

MAX_BYTES_ENV = "PILOTAGE_MAX_MANIFEST_BYTES"
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_DEPTH = 100
"""Nesting deeper than this is refused (the YAML composer and pydantic recurse)."""


class ManifestError(ValueError):
    """A manifest that is not a valid Pilotage resource; the message names the field."""


def max_manifest_bytes() -> int:
    """The most bytes one manifest file (or routing document) may hold, and the most one of
    its documents may expand to once every YAML alias is replaced by what it refers to:
    ``$PILOTAGE_MAX_MANIFEST_BYTES``, 1 MiB by default."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ManifestError(f"{MAX_BYTES_ENV}: must be a positive number of bytes, got {raw!r}")
    return value


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expansion(root: yaml.Node, limit: int) -> None:
    """Refuse a composed document that, with its aliases expanded, exceeds ``limit`` bytes,
    nests deeper than MAX_DEPTH, or refers to itself.

    An alias (``*a``) is the very node its anchor (``&a``) marks, so nine lines of nine
    aliases each (the "billion laughs") compose to a few nodes but construct, validate and
    serialise to hundreds of millions. Sizes are counted as JSON would write the expanded
    document (a scalar's text plus two, two per collection), memoised per node, so the
    check is linear in the text however much the aliases would expand.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            own = len(node.value) + 2 if isinstance(node, yaml.ScalarNode) else 2
            size = own + sum(sizes[id(c)] for c in _children(node))
            if size > limit:
                mark = node.start_mark
                raise ManifestError(
                    f"line {mark.line + 1}: the document expands to more than {limit} bytes "
                    f"once its YAML aliases are replaced (limit set by {MAX_BYTES_ENV})"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ManifestError(
                f"line {node.start_mark.line + 1}: a YAML alias refers to a node that contains it"
            )
        if depth > MAX_DEPTH:
            raise ManifestError(
                f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            )
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def safe_load_all(text: str | bytes, limit: int | None = None) -> Iterator[Any]:
    """``yaml.safe_load_all`` that refuses text over ``limit`` bytes (max_manifest_bytes()
    by default) and documents that aliases expand past it (check_expansion)."""
    limit = max_manifest_bytes() if limit is None else limit
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > limit:
        raise ManifestError(f"{size} bytes, more than the limit of {limit} ({MAX_BYTES_ENV})")
    loader = yaml.SafeLoader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    break
                node = loader.get_node()
            except RecursionError:
                raise ManifestError(f"nested more than {MAX_DEPTH} levels deep") from None
            if node is None:
                continue
            check_expansion(node, limit)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def safe_load(text: str | bytes, limit: int | None = None) -> Any:
    """The single document of ``text`` (None when empty), bounded like safe_load_all."""
    docs = list(safe_load_all(text, limit))
    if len(docs) > 1:
        raise ManifestError("expected a single YAML document, found several")
    return docs[0] if docs else None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: ``line 2, column 11: expected ',' or '}'``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = "; ".join(str(p) for p in (exc.context, exc.problem) if p) or "not valid"
    return where + what


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    A FIFO, a device (``/dev/zero``) or a directory is refused before anything is read
    (opened non-blocking, so a FIFO without a writer does not hang), and at most
    ``limit + 1`` bytes are ever read, so a file that grows while read is refused too.
    Raises OSError (not a regular file: EINVAL with a message) or ValueError (too large).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file ({file_kind(info.st_mode)})")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, more than the limit of {limit}")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ValueError(f"more than the limit of {limit} bytes")
        return data
    finally:
        os.close(fd)
