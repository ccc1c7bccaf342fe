"""The one exception a training or profiling run ends with when it cannot go on."""

from __future__ import annotations


class TrainingError(Exception):
    """The run cannot produce a usable result; the message says why in one line."""


class DataError(TrainingError):
    """The data cannot be read or does not meet the Dataset's expectations."""


class SpecError(TrainingError):
    """The TrainingJob's spec cannot work (with this data): retrying cannot help.

    The run ends with exit status 2 and ``"retryable": false`` in its summary, and the
    control plane fails the TrainingJob with ``InvalidSpec`` instead of retrying it.
    """
