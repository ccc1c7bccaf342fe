"""JsonShape counts a JSON body's structure outside strings, however the body is split
into chunks (the server feeds it chunk by chunk as it arrives, to refuse too many rows)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotage.server.bounds import JsonShape

# strings full of what looks like structure: commas, brackets, quotes and backslashes
TEXT = st.text(alphabet=st.sampled_from(list('ab,[]{}"\\: é')), max_size=12)
SCALAR = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), TEXT)
DOC = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=40,
)


def outside_strings(body: bytes) -> tuple[int, int]:
    """Commas, and opening brackets or braces, outside strings: one byte at a time."""
    commas = opens = 0
    in_string = escaped = False
    for byte in body:
        c = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == ",":
            commas += 1
        elif c in "[{":
            opens += 1
    return commas, opens


@settings(max_examples=300, deadline=None)
@given(doc=DOC, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_structure_is_counted_outside_strings_whatever_the_chunks(
    doc: object, cuts: list[int]
) -> None:
    body = json.dumps({"instances": doc}, ensure_ascii=False).encode()
    shape = JsonShape()
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(body)), len(body)]:
        shape.feed(body[start:cut])
        start = max(start, cut)
    assert (shape.commas, shape.opens) == outside_strings(body)


def test_a_body_of_numbers_is_counted_exactly() -> None:
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 5000}).encode()
    shape = JsonShape()
    for start in range(0, len(body), 4096):
        shape.feed(body[start : start + 4096])
    assert (shape.commas, shape.opens) == (5000 * 3 + 4999, 5000 + 2)
    assert shape.too_many_rows(3000, 4) and not shape.too_many_rows(5000, 4)
