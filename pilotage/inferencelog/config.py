"""The logging settings a router runs with: parsed from a plain document, checked, immutable.

The document is ``ModelDeployment.spec.logging`` as the shells hand it to the router
(the ``logging`` section of the routing document)::

    sampleRate: 0.1                    # 0-1, share of answered requests logged (0: off)
    sink:
      uri: file:///var/log/pilotage    # file://, pvc://CLAIM/path (a PVC on Kubernetes),
                                       # s3://bucket/prefix, http(s)://collector/path
                                       # (CloudEvents)
    redact: [ssn, email]               # feature names never written
    shadow: false                      # also log the shadow variant's answers
    namespace: default                 # written into every record and the partition path
    flushSeconds: 1.0                  # a batch leaves at least this often
    rollSeconds: 300                   # a file (S3 object) is closed after this long...
    rollBytes: 67108864                # ...or this many bytes
    bufferRecords: 10000               # records waiting at most; more are dropped (counted)
    bufferBytes: 67108864              # request+answer bytes waiting at most

Only ``sampleRate`` and ``sink.uri`` matter to most users; the rest has defaults.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SINK_SCHEMES = ("file", "pvc", "s3", "http", "https")
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_ROLL_SECONDS = 300.0
DEFAULT_ROLL_BYTES = 64 * 1024 * 1024
DEFAULT_BUFFER_RECORDS = 10_000
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_HTTP_TIMEOUT = 5.0

_KEYS = {
    "sampleRate",
    "sink",
    "redact",
    "shadow",
    "namespace",
    "flushSeconds",
    "rollSeconds",
    "rollBytes",
    "bufferRecords",
    "bufferBytes",
}
_SINK_KEYS = {"uri", "timeoutSeconds"}
_SEGMENT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


class LoggingConfigError(ValueError):
    """A logging document that cannot be used; the message names the field at fault."""


@dataclass(frozen=True)
class LoggingConfig:
    sample_rate: float = 0.0
    sink_uri: str = ""
    redact: frozenset[str] = field(default_factory=frozenset)
    shadow: bool = False
    namespace: str = "default"
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    roll_seconds: float = DEFAULT_ROLL_SECONDS
    roll_bytes: int = DEFAULT_ROLL_BYTES
    buffer_records: int = DEFAULT_BUFFER_RECORDS
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    sink_timeout: float = DEFAULT_HTTP_TIMEOUT

    @property
    def enabled(self) -> bool:
        return self.sample_rate > 0.0

    @property
    def scheme(self) -> str:
        return urlsplit(self.sink_uri).scheme

    def to_document(self) -> dict[str, Any]:
        return {
            "sampleRate": self.sample_rate,
            "sink": {"uri": self.sink_uri, "timeoutSeconds": self.sink_timeout},
            "redact": sorted(self.redact),
            "shadow": self.shadow,
            "namespace": self.namespace,
            "flushSeconds": self.flush_seconds,
            "rollSeconds": self.roll_seconds,
            "rollBytes": self.roll_bytes,
            "bufferRecords": self.buffer_records,
            "bufferBytes": self.buffer_bytes,
        }


def _number(doc: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LoggingConfigError(f"logging.{key}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise LoggingConfigError(f"logging.{key}: must be within {low:g}-{high:g}, got {value!r}")
    return float(value)


def check_sink_uri(uri: Any) -> str:
    """The sink URI when it is usable, else LoggingConfigError naming what is wrong."""
    if not isinstance(uri, str) or not uri:
        raise LoggingConfigError(
            "logging.sink.uri: required when sampleRate > 0 (file://, s3:// or http(s)://)"
        )
    parts = urlsplit(uri)
    if parts.scheme not in SINK_SCHEMES:
        raise LoggingConfigError(
            f"logging.sink.uri: unsupported scheme {parts.scheme or '(none)'!r} in {uri!r}; "
            "use file://, pvc://, s3:// or http(s)://"
        )
    if parts.scheme == "file" and not parts.path.startswith("/"):
        raise LoggingConfigError(f"logging.sink.uri: {uri!r} needs an absolute path (file:///...)")
    if parts.scheme == "pvc":
        from pilotage.storage import StorageError, local_path

        try:
            local_path(uri)
        except StorageError as exc:
            raise LoggingConfigError(f"logging.sink.uri: {exc}") from None
    if parts.scheme == "s3" and not parts.netloc:
        raise LoggingConfigError(f"logging.sink.uri: {uri!r} names no bucket (s3://BUCKET/prefix)")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise LoggingConfigError(f"logging.sink.uri: {uri!r} names no host")
    return uri


def parse_logging(doc: Any) -> LoggingConfig:
    """Check a ``logging`` document (camelCase keys) and return the settings."""
    if doc is None:
        return LoggingConfig()
    if not isinstance(doc, dict):
        raise LoggingConfigError(f"logging: must be a mapping, got {type(doc).__name__}")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise LoggingConfigError(
            f"logging: unknown field(s) {', '.join(unknown)} (have: {', '.join(sorted(_KEYS))})"
        )
    rate = _number(doc, "sampleRate", 0.0, 0.0, 1.0)
    sink = doc.get("sink") or {}
    if not isinstance(sink, dict):
        raise LoggingConfigError(f"logging.sink: must be a mapping with uri, got {sink!r}")
    unknown = sorted(set(sink) - _SINK_KEYS)
    if unknown:
        raise LoggingConfigError(f"logging.sink: unknown field(s) {', '.join(unknown)}")
    uri = sink.get("uri", "")
    if rate > 0 or uri:
        uri = check_sink_uri(uri)
    redact = doc.get("redact") or []
    if not isinstance(redact, list) or not all(isinstance(n, str) and n for n in redact):
        raise LoggingConfigError(f"logging.redact: must be a list of feature names, got {redact!r}")
    shadow = doc.get("shadow", False)
    if not isinstance(shadow, bool):
        raise LoggingConfigError(f"logging.shadow: must be true or false, got {shadow!r}")
    namespace = doc.get("namespace", "default")
    if not isinstance(namespace, str) or not _SEGMENT.fullmatch(namespace):
        raise LoggingConfigError(f"logging.namespace: not a namespace name: {namespace!r}")
    return LoggingConfig(
        sample_rate=rate,
        sink_uri=uri,
        redact=frozenset(redact),
        shadow=shadow,
        namespace=namespace,
        flush_seconds=_number(doc, "flushSeconds", DEFAULT_FLUSH_SECONDS, 0.01, 3600),
        roll_seconds=_number(doc, "rollSeconds", DEFAULT_ROLL_SECONDS, 0.1, 86400),
        roll_bytes=int(_number(doc, "rollBytes", DEFAULT_ROLL_BYTES, 1024, 1 << 34)),
        buffer_records=int(_number(doc, "bufferRecords", DEFAULT_BUFFER_RECORDS, 1, 10_000_000)),
        buffer_bytes=int(_number(doc, "bufferBytes", DEFAULT_BUFFER_BYTES, 1024, 1 << 34)),
        sink_timeout=_number(sink, "timeoutSeconds", DEFAULT_HTTP_TIMEOUT, 0.1, 600),
    )
