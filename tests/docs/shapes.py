"""Does a real JSON answer have the shape a doc example shows?

Values in doc examples are illustrative; their keys and types are not. Rules, doc value
against actual value:

* `"…"` or `"..."` (a string) and `null` stand for any value;
* a number matches a number (int or float), a string a string, a bool a bool;
* an object: every documented key must be there and every actual key documented,
  unless the object has a `"…"`/`"..."` key (then more keys may follow);
* an array: each actual element must match one of the documented elements (an empty
  actual array matches; `"…"` and `{"…": "…"}` elements only say "and so on");
* objects keyed by data (feature names, status codes…) are named by `any_keys` paths
  (dot-separated, `*` for any key or index): there each actual value must match one of
  the documented values, whatever its key.
"""

from __future__ import annotations

from typing import Any

ELLIPSES = ("…", "...")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches_path(path: tuple[str, ...], patterns: set[tuple[str, ...]]) -> bool:
    return any(
        len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True))
        for p in patterns
    )


def mismatches(
    documented: Any, actual: Any, any_keys: set[tuple[str, ...]], path: tuple[str, ...] = ()
) -> list[str]:
    """Where `actual` departs from the documented shape, as `path: problem` lines."""
    where = ".".join(path) or "(top)"
    if documented is None or (isinstance(documented, str) and documented in ELLIPSES):
        return []
    if isinstance(documented, bool):
        return [] if isinstance(actual, bool) else [f"{where}: expected a bool, got {actual!r}"]
    if _is_number(documented):
        return [] if _is_number(actual) else [f"{where}: expected a number, got {actual!r}"]
    if isinstance(documented, str):
        return [] if isinstance(actual, str) else [f"{where}: expected a string, got {actual!r}"]
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return [f"{where}: expected an array, got {actual!r}"]
        return _each_matches_one(documented, list(enumerate(actual)), any_keys, path)
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        if _matches_path(path, any_keys):
            return _each_matches_one(
                list(documented.values()), list(actual.items()), any_keys, path
            )
        open_ended = any(k in ELLIPSES for k in documented)
        out = [
            f"{where}: no key {k!r}" for k in documented if k not in ELLIPSES and k not in actual
        ]
        if not open_ended:
            out += [f"{where}: undocumented key {k!r}" for k in actual if k not in documented]
        for key, value in documented.items():
            if key in actual:
                out += mismatches(value, actual[key], any_keys, (*path, key))
        return out
    raise TypeError(f"{where}: not a JSON value: {documented!r}")


def _only_ellipsis(value: Any) -> bool:
    """`"…"` or `{"…": "…"}`: "and so on", "like the others"."""
    if isinstance(value, dict):
        return all(k in ELLIPSES and _only_ellipsis(v) for k, v in value.items())
    return isinstance(value, str) and value in ELLIPSES


def _each_matches_one(
    documented: list[Any],
    actual: list[tuple[Any, Any]],
    any_keys: set[tuple[str, ...]],
    path: tuple[str, ...],
) -> list[str]:
    shapes = [d for d in documented if not _only_ellipsis(d)]
    if not shapes:
        return []
    out = []
    for key, value in actual:
        tries: list[list[str]] = [mismatches(d, value, any_keys, (*path, str(key))) for d in shapes]
        if all(tries):
            fewest: list[str] = min(tries, key=len)
            out += fewest
    return out
