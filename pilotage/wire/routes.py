"""The routing document: which variants exist, where they listen and who gets what share.

The one definition of the document the router reads (the file given to
``pilotage route --config``, the body of ``PUT /admin/routes``, the ConfigMap the
operator keeps), parsed and produced here and nowhere else::

    deployment: iris
    mode: canary                 # canary | bluegreen | shadow
    stickyHeader: x-user-id      # optional
    timeoutSeconds: 10           # optional, per upstream attempt (default 10)
    revision: "md-7-step-2"      # optional, echoed in stats so the writer can see it applied
    sequence: 7                  # optional: the router never goes back to a lower one
    logging:                     # optional: inference logging (docs/inference-logging.md)
      sampleRate: 0.1
      sink: {uri: "file:///var/log/pilotage"}
    variants:
      - {name: stable, url: "http://10.0.0.5:8080", weight: 90, version: "1"}
      - {name: canary, url: "http://10.0.0.6:8080", weight: 10, version: "2"}
      # or several replicas, balanced by least requests in flight; [] = at zero:
      # - {name: canary, urls: ["http://10.0.0.6:8080", "http://10.0.0.7:8080"], ...}
    activation:                  # optional: requests for a variant at zero wait
      timeoutSeconds: 30         # this long for its first replica (then 503)
      maxHeld: 1000              # at most this many at once (more: 503 at once)
    shadow:                      # mode shadow only
      variant: shadow
      percent: 100               # share of requests copied (default 100)
      tolerance: 1.0e-6          # regression: |a - b| <= tolerance counts as agreement

Two views of it, both plain immutable data:

* ``RouteTable`` is what the control plane decides (roles, versions, weights) before
  anyone knows where a version listens; ``RouteTable.to_document`` adds the URLs.
* ``RoutingTable`` is a validated document (``parse_table``), what the router routes by;
  swapping the router's table is a single reference assignment.

No I/O here: decoding text and reading files is ``pilotage.router.table``'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pilotage.inferencelog.config import LoggingConfig, LoggingConfigError, parse_logging

MODES = ("canary", "bluegreen", "shadow")
DEFAULT_TIMEOUT_SECONDS = 10.0
STABLE = "stable"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_TOP_KEYS = {
    "deployment",
    "mode",
    "variants",
    "stickyHeader",
    "shadow",
    "timeoutSeconds",
    "revision",
    "sequence",
    "logging",
    "activation",
}
_VARIANT_KEYS = {"name", "url", "urls", "weight", "version"}
_ACTIVATION_KEYS = {"timeoutSeconds", "maxHeld"}
MAX_REPLICAS = 1000
_SHADOW_KEYS = {"variant", "percent", "tolerance"}


class RoutingError(ValueError):
    """A routing document that cannot be used; the message names the field at fault."""


@dataclass(frozen=True)
class Replica:
    url: str
    host: str
    port: int


@dataclass(frozen=True)
class Variant:
    name: str
    url: str
    """The first replica's URL ("" when the variant is at zero replicas)."""
    host: str
    port: int
    weight: int
    version: str
    replicas: tuple[Replica, ...] = ()
    """Every replica (the one of `url` when the document gave `url`)."""

    def url_fields(self) -> dict[str, Any]:
        if len(self.replicas) == 1:
            return {"url": self.url}
        return {"urls": [r.url for r in self.replicas]}


@dataclass(frozen=True)
class Activation:
    """How long and how many requests the router holds for a variant at zero replicas."""

    timeout_seconds: float = 30.0
    max_held: int = 1000


@dataclass(frozen=True)
class ShadowSpec:
    variant: str
    percent: float
    tolerance: float


@dataclass(frozen=True)
class RoutingTable:
    deployment: str
    mode: str
    variants: tuple[Variant, ...]
    sticky_header: str | None
    shadow: ShadowSpec | None
    timeout_seconds: float
    revision: str | None
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    activation: Activation | None = None
    sequence: int | None = None
    """Orders the tables one writer sends (None: unordered, always applied); see
    `RouteTable.sequence`."""

    def variant(self, name: str) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None

    @property
    def routed(self) -> tuple[Variant, ...]:
        """Variants that may receive user traffic (everything but the shadow)."""
        shadow = self.shadow.variant if self.shadow else None
        return tuple(v for v in self.variants if v.name != shadow)

    def weights(self) -> dict[str, int]:
        return {v.name: v.weight for v in self.variants}

    def to_document(self) -> dict[str, Any]:
        return routing_document(
            self.deployment,
            self.mode,
            (variant_document(v.name, v.url_fields(), v.weight, v.version) for v in self.variants),
            timeout_seconds=self.timeout_seconds,
            sticky_header=self.sticky_header,
            shadow=(
                None
                if self.shadow is None
                else {
                    "variant": self.shadow.variant,
                    "percent": self.shadow.percent,
                    "tolerance": self.shadow.tolerance,
                }
            ),
            revision=self.revision,
            logging=self.logging.to_document() if self.logging.enabled else None,
            activation=self.activation,
            sequence=self.sequence,
        )


def _unknown_keys(where: str, given: Mapping[Any, Any], allowed: set[str]) -> None:
    # YAML keys need not be strings (`1:`, `on:` is True): name them as written
    extra = sorted(str(k) for k in given if k not in allowed)
    if extra:
        raise RoutingError(
            f"{where}: unknown field(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RoutingError(f"{where}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise RoutingError(f"{where}: must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _parse_url(where: str, url: Any) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url:
        raise RoutingError(f"{where}: must be an http:// URL, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise RoutingError(f"{where}: not a valid URL, got {url!r}") from None
    if parts.scheme != "http":
        raise RoutingError(f"{where}: only http:// upstreams are supported, got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise RoutingError(f"{where}: bad port in {url!r}") from None
    if not parts.hostname:
        raise RoutingError(f"{where}: no host in {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise RoutingError(f"{where}: must be scheme://host:port with no path, got {url!r}")
    return url.rstrip("/"), parts.hostname, port


MAX_HEADER_VALUE = 128


def _header_safe(value: str) -> bool:
    """A value the router may send as an HTTP header: visible ASCII, no space, no CR/LF."""
    return 0 < len(value) <= MAX_HEADER_VALUE and all(33 <= ord(c) < 127 for c in value)


def _parse_variant(i: int, raw: Any) -> Variant:
    where = f"variants[{i}]"
    if not isinstance(raw, Mapping):
        raise RoutingError(f"{where}: must be a mapping with name, url, weight, version")
    _unknown_keys(where, raw, _VARIANT_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RoutingError(
            f"{where}.name: must be a lowercase DNS label (e.g. stable), got {name!r}"
        )
    if ("url" in raw) == ("urls" in raw):
        raise RoutingError(
            f"{where}: give exactly one of url (one replica) or urls (a list, [] at zero)"
        )
    if "url" in raw:
        replicas: tuple[Replica, ...] = (Replica(*_parse_url(f"{where}.url", raw.get("url"))),)
    else:
        raw_urls = raw.get("urls")
        if not isinstance(raw_urls, list) or len(raw_urls) > MAX_REPLICAS:
            raise RoutingError(
                f"{where}.urls: must be a list of at most {MAX_REPLICAS} http:// URLs, "
                f"got {raw_urls!r:.80}"
            )
        replicas = tuple(
            Replica(*_parse_url(f"{where}.urls[{j}]", u)) for j, u in enumerate(raw_urls)
        )
        seen = [r.url for r in replicas]
        twice = sorted({u for u in seen if seen.count(u) > 1})
        if twice:
            raise RoutingError(f"{where}.urls: listed twice: {', '.join(twice)}")
    first = replicas[0] if replicas else Replica("", "", 0)
    url, host, port = first.url, first.host, first.port
    weight = raw.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise RoutingError(f"{where}.weight: must be an integer 0..100, got {weight!r}")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int) or str(version) == "":
        raise RoutingError(
            f"{where}.version: required (the model version it serves), got {version!r}"
        )
    if not _header_safe(str(version)):
        # the version is sent back in x-pilotage-model-version: a CR/LF or control
        # character there would make every answer of this variant unwritable
        raise RoutingError(
            f"{where}.version: must be 1-{MAX_HEADER_VALUE} visible ASCII characters "
            f"(it is sent as the x-pilotage-model-version header), got {str(version)!r}"
        )
    return Variant(
        name=name,
        url=url,
        host=host,
        port=port,
        weight=weight,
        version=str(version),
        replicas=replicas,
    )


def _parse_shadow(raw: Any, names: set[str]) -> ShadowSpec:
    if not isinstance(raw, Mapping):
        raise RoutingError("shadow: must be a mapping with variant and percent")
    _unknown_keys("shadow", raw, _SHADOW_KEYS)
    variant = raw.get("variant")
    if not isinstance(variant, str) or variant not in names:
        raise RoutingError(
            f"shadow.variant: {variant!r} is not one of the variants ({', '.join(sorted(names))})"
        )
    percent = _number("shadow.percent", raw.get("percent", 100), 0, 100)
    tolerance = _number("shadow.tolerance", raw.get("tolerance", 1e-6), 0, math.inf)
    return ShadowSpec(variant=str(variant), percent=percent, tolerance=tolerance)


def _parse_activation(raw: Any) -> Activation:
    if not isinstance(raw, Mapping):
        raise RoutingError("activation: must be a mapping with timeoutSeconds and maxHeld")
    _unknown_keys("activation", raw, _ACTIVATION_KEYS)
    timeout = _number("activation.timeoutSeconds", raw.get("timeoutSeconds", 30), 0.001, 3600)
    held = raw.get("maxHeld", 1000)
    if isinstance(held, bool) or not isinstance(held, int) or not 1 <= held <= 100000:
        raise RoutingError(f"activation.maxHeld: must be an integer 1..100000, got {held!r}")
    return Activation(timeout_seconds=timeout, max_held=held)


def parse_table(doc: Any) -> RoutingTable:
    """Validate a routing document (already decoded) into a table, or raise RoutingError."""
    if not isinstance(doc, Mapping):
        raise RoutingError("routing document: must be a mapping (deployment, mode, variants...)")
    _unknown_keys("routing document", doc, _TOP_KEYS)
    deployment = doc.get("deployment")
    if not isinstance(deployment, str) or not deployment:
        raise RoutingError(f"deployment: required non-empty name, got {deployment!r}")
    mode = doc.get("mode")
    if mode not in MODES:
        raise RoutingError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    raw_variants = doc.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise RoutingError("variants: required non-empty list")
    variants = tuple(_parse_variant(i, v) for i, v in enumerate(raw_variants))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RoutingError(f"variants: duplicate name(s) {', '.join(duplicates)}")

    shadow: ShadowSpec | None = None
    if doc.get("shadow") is not None:
        if mode != "shadow":
            raise RoutingError(f"shadow: only valid with mode: shadow (mode is {mode})")
        shadow = _parse_shadow(doc["shadow"], set(names))
    elif mode == "shadow":
        raise RoutingError("shadow: required with mode: shadow (variant, percent)")

    routed = [v for v in variants if shadow is None or v.name != shadow.variant]
    if shadow is not None:
        mirror = next(v for v in variants if v.name == shadow.variant)
        if mirror.weight != 0:
            raise RoutingError(
                f"variants: the shadow variant {mirror.name!r} must have weight 0, got {mirror.weight}"
            )
    if not routed:
        raise RoutingError("variants: at least one variant must take user traffic")
    total = sum(v.weight for v in routed)
    if total != 100:
        listed = ", ".join(f"{v.name}={v.weight}" for v in routed)
        raise RoutingError(f"variants: weights must sum to 100, got {total} ({listed})")
    if mode == "bluegreen" and sorted(v.weight for v in routed)[-1] != 100:
        raise RoutingError(
            "variants: mode bluegreen needs one active variant with weight 100 and the others 0"
        )

    sticky = doc.get("stickyHeader")
    if sticky is not None and (not isinstance(sticky, str) or not _HEADER.match(sticky)):
        raise RoutingError(f"stickyHeader: must be an HTTP header name, got {sticky!r}")
    timeout = _number(
        "timeoutSeconds", doc.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS), 0.001, 3600
    )
    revision = doc.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, str | int)):
        raise RoutingError(f"revision: must be a string or integer, got {revision!r}")
    sequence = doc.get("sequence")
    if sequence is not None and (
        isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0
    ):
        raise RoutingError(f"sequence: must be a whole number >= 0, got {sequence!r}")
    try:
        logging = parse_logging(doc.get("logging"))
    except LoggingConfigError as exc:
        raise RoutingError(str(exc)) from None
    return RoutingTable(
        deployment=deployment,
        mode=str(mode),
        variants=variants,
        sticky_header=sticky.lower() if sticky else None,
        shadow=shadow,
        timeout_seconds=timeout,
        revision=None if revision is None else str(revision),
        logging=logging,
        activation=None if doc.get("activation") is None else _parse_activation(doc["activation"]),
        sequence=sequence,
    )


# ---------------------------------------------------------------------------
# Producing the document (both views write it through these).
# ---------------------------------------------------------------------------


def variant_document(
    name: str, addresses: Mapping[str, Any], weight: int, version: str
) -> dict[str, Any]:
    """One variant; ``addresses`` is ``{"url": ...}`` or ``{"urls": [...]}`` (url_fields)."""
    return {"name": name, **addresses, "weight": weight, "version": version}


def url_fields(urls: str | Sequence[str]) -> dict[str, Any]:
    """`url` for one replica, `urls` for several or none (a variant at zero)."""
    if isinstance(urls, str):
        return {"url": urls}
    return {"url": urls[0]} if len(urls) == 1 else {"urls": list(urls)}


def routing_document(
    deployment: str,
    mode: str,
    variants: Iterable[Mapping[str, Any]],
    *,
    timeout_seconds: float | None = None,
    sticky_header: str | None = None,
    shadow: Mapping[str, Any] | None = None,
    revision: str | None = None,
    logging: Mapping[str, Any] | None = None,
    activation: Activation | None = None,
    sequence: int | None = None,
) -> dict[str, Any]:
    """A routing document; optional fields that are None are left out."""
    doc: dict[str, Any] = {"deployment": deployment, "mode": mode, "variants": list(variants)}
    if timeout_seconds is not None:
        doc["timeoutSeconds"] = timeout_seconds
    if sticky_header:
        doc["stickyHeader"] = sticky_header
    if shadow is not None:
        doc["shadow"] = dict(shadow)
    if revision is not None:
        doc["revision"] = revision
    if sequence is not None:
        doc["sequence"] = sequence
    if logging is not None:
        doc["logging"] = dict(logging)
    if activation is not None:
        doc["activation"] = {
            "timeoutSeconds": activation.timeout_seconds,
            "maxHeld": activation.max_held,
        }
    return doc


# ---------------------------------------------------------------------------
# The control plane's view: no addresses yet.
# ---------------------------------------------------------------------------

RouteMode = Literal["canary", "bluegreen", "shadow"]
VariantRole = Literal["stable", "canary", "preview", "shadow"]


@dataclass(frozen=True)
class RouteVariant:
    name: VariantRole
    version: str
    weight: int


@dataclass(frozen=True)
class ShadowRoute:
    variant: VariantRole
    """Name of the variant that receives mirrored requests (always `shadow`)."""
    percent: int


@dataclass(frozen=True)
class RouteLogging:
    """Inference logging for the router (`spec.logging`, docs/inference-logging.md)."""

    sample_rate: float
    sink_uri: str
    namespace: str
    redact: tuple[str, ...] = ()
    shadow: bool = False
    sink_timeout_seconds: float = 5.0

    def to_document(self) -> dict[str, Any]:
        return {
            "sampleRate": self.sample_rate,
            "sink": {"uri": self.sink_uri, "timeoutSeconds": self.sink_timeout_seconds},
            "redact": list(self.redact),
            "shadow": self.shadow,
            "namespace": self.namespace,
        }


@dataclass(frozen=True)
class RouteTable:
    """The routing table without upstream URLs: the platform fills each variant's URL
    from (deployment, version). Weights of the routed variants sum to 100; a preview or
    shadow variant has weight 0. `revision` changes whenever the table does; the router
    echoes it in its stats so the reconciler knows the table is live."""

    mode: RouteMode
    variants: tuple[RouteVariant, ...]
    sticky_header: str | None = None
    shadow: ShadowRoute | None = None
    revision: str = ""
    logging: RouteLogging | None = None
    activation: Activation | None = None
    """Set with autoscaling: a variant's URLs are then its *ready* replicas only (none at
    zero, and the router holds its requests until one is ready)."""
    sequence: int | None = None
    """Grows by one whenever `revision` changes (kept in `status.routes`). A table can
    reach a router twice, pushed at once and later through a mounted ConfigMap that
    lags by up to a minute; the router applies none older than the one it has, so the
    late copy of a superseded table never turns traffic back."""

    def weights(self) -> dict[str, int]:
        return {v.name: v.weight for v in self.variants}

    def to_document(
        self, deployment: str, url_for_version: Mapping[str, str | Sequence[str]]
    ) -> dict[str, Any]:
        """The router's routing document (`pilotage route --config`, `PUT /admin/routes`)."""
        return routing_document(
            deployment,
            self.mode,
            (
                variant_document(
                    v.name, url_fields(url_for_version[v.version]), v.weight, v.version
                )
                for v in self.variants
            ),
            sticky_header=self.sticky_header,
            shadow=(
                None
                if self.shadow is None
                else {"variant": self.shadow.variant, "percent": self.shadow.percent}
            ),
            revision=self.revision,
            logging=None if self.logging is None else self.logging.to_document(),
            activation=self.activation,
            sequence=self.sequence,
        )
