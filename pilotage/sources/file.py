"""`file:///abs/path.csv` (or `file://relative/path.csv`): the local filesystem of the run."""

from __future__ import annotations

from pilotage.sources.base import register
from pilotage.sources.files import FileSource


@register
class LocalFileSource(FileSource):
    schemes = ("file",)
