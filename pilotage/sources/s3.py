"""`s3://bucket/key.csv`: any S3-compatible store.

Credentials: the Dataset's own `credentialsSecretRef` when it names one — the run's pod gets
exactly that Secret (mounted at `$PILOTAGE_CREDENTIALS_DIR/<name>`, not as env, so that the
run still writes its artifacts with the operator's credentials) — else the operator-wide S3
Secret, as `AWS_*` env.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from pilotage.sources.base import Access, register, secret_keys
from pilotage.sources.files import FileSource
from pilotage.storage import S3_KEYS, download, read_bytes
from pilotage.trainer.errors import DataError

if TYPE_CHECKING:
    from pilotage.api.dataset import DataSource

REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def own_credentials(source: DataSource) -> dict[str, str]:
    """The keys of the source's own Secret; empty without one (the environment's apply)."""
    found = secret_keys(source, S3_KEYS)
    ref = source.credentials_secret_ref
    missing = [k for k in REQUIRED if not found.get(k)]
    if ref is not None and missing:
        raise DataError(
            f"spec.source.credentialsSecretRef: Secret {ref.name!r} has no key {missing[0]}"
        )
    return found


@register
class S3Source(FileSource):
    schemes = ("s3",)
    credentials = S3_KEYS

    def access(self, source: DataSource) -> Access:
        ref = source.credentials_secret_ref
        return Access(s3=True, secret=ref.name if ref is not None else None)

    def read(self, source: DataSource) -> bytes:
        return read_bytes(source.uri, own_credentials(source))

    def copy(self, source: DataSource, sink: BinaryIO) -> None:
        download(source.uri, sink, own_credentials(source))
