"""The one error the drift package raises for bad input."""

from __future__ import annotations


class DriftInputError(ValueError):
    """Input to a drift statistic is malformed; the message names what is wrong."""
