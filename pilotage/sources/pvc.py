"""`pvc://CLAIM/path.csv`: a file on a PersistentVolumeClaim, mounted in the run's pod at
`$PILOTAGE_PVC_ROOT/CLAIM` (the path may not leave the claim: pilotage.storage)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pilotage.sources.base import Access, register
from pilotage.sources.files import FileSource

if TYPE_CHECKING:
    from pilotage.api.dataset import DataSource


def claim_of(uri: str) -> str | None:
    return urlparse(uri).netloc or None


@register
class PvcSource(FileSource):
    schemes = ("pvc",)

    def access(self, source: DataSource) -> Access:
        claim = claim_of(source.uri)
        return Access(claims=(claim,) if claim else ())
