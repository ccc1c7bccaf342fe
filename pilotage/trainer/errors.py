"""The one exception a training or profiling run ends with when it cannot go on."""

from __future__ import annotations


class TrainingError(Exception):
    """The run cannot produce a usable result; the message says why in one line."""


class DataError(TrainingError):
    """The data cannot be read or does not meet the Dataset's expectations."""
