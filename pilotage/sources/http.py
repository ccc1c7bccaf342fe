"""`https://host/path.csv` (and `http://`): read only, with a timeout per read and a bound on
the whole read (pilotage.storage)."""

from __future__ import annotations

from pilotage.sources.base import register
from pilotage.sources.files import FileSource


@register
class HttpSource(FileSource):
    schemes = ("https", "http")
