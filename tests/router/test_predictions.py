"""Reading predictions out of upstream answers never raises, whatever the answer holds."""

from __future__ import annotations

import pytest

from pilotage.router.predictions import extract_predictions


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"predictions": [[3.2], [1.0]]}', [3.2, 1.0]),
        (b'{"outputs": [{"name": "probabilities", "data": [0.1]}, {"name": "label", "data": [2]}]}', [2]),
        (b'{"outputs": [{"name": "score", "data": [0.5]}]}', [0.5]),
        # an output whose name is not a string is not a prediction (was a TypeError: a 500
        # on POST /v1/feedback for that request id)
        (b'{"outputs": [{"name": ["label"], "data": [1]}, {"name": "label", "data": [7]}]}', [7]),
        (b'{"outputs": [{"name": {"a": 1}, "data": [1]}]}', None),
        (b"not json", None),
        (b"[1, 2]", None),
    ],
)  # fmt: skip
def test_extract_predictions(body: bytes, expected: list[object] | None) -> None:
    assert extract_predictions(body) == expected
