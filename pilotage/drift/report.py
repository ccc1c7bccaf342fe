"""What a drift evaluation returns: per-feature verdicts and the data-set verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["Healthy", "Drifting", "InsufficientData"]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the predictions') statistic and verdict.

    ``score`` is the statistic itself: PSI, JS distance, normalised Wasserstein-1,
    KS D, or the chi-squared statistic; ``p_value`` is set for ks and chi2, whose
    verdict is ``p_value < threshold``; the others drift when ``score >= threshold``.
    ``exact`` tells whether it came from samples (the reservoir) or from bins.
    """

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool
    samples: int
    p_value: float | None = None
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "samples": self.samples,
            "exact": self.exact,
        }
        if self.p_value is not None:
            out["pValue"] = self.p_value
        return out


@dataclass(frozen=True)
class DriftReport:
    """The outcome of one drift check over one window.

    ``drifted_features`` lists the drifted features' names by decreasing score;
    ``share_drifted`` is their share of all features; the data set drifts when
    ``share_drifted >= drift_share`` (as in Evidently). With fewer than
    ``min_samples`` rows in the window nothing is declared drifted and
    ``insufficient_data`` is set (scores are still reported).
    """

    samples: int
    method: str
    features: tuple[FeatureDrift, ...]
    drifted_features: tuple[str, ...]
    share_drifted: float
    drift_share: float
    dataset_drift: bool
    prediction: FeatureDrift | None
    insufficient_data: bool

    @property
    def phase(self) -> Phase:
        """DriftMonitor phase: InsufficientData, else Drifting on data-set drift, else Healthy."""
        if self.insufficient_data:
            return "InsufficientData"
        return "Drifting" if self.dataset_drift else "Healthy"

    @property
    def prediction_drift(self) -> bool:
        return self.prediction is not None and self.prediction.drifted

    @property
    def max_score(self) -> float:
        return max((f.score for f in self.features), default=0.0)

    def feature(self, name: str) -> FeatureDrift:
        for result in self.features:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """camelCase, JSON-ready, in the shape of a DriftMonitor status."""
        return {
            "phase": self.phase,
            "samples": self.samples,
            "method": self.method,
            "features": [f.to_dict() for f in self.features],
            "driftedFeatures": list(self.drifted_features),
            "shareDrifted": self.share_drifted,
            "driftShare": self.drift_share,
            "datasetDrift": self.dataset_drift,
            "predictionDrift": None if self.prediction is None else self.prediction.to_dict(),
            "insufficientData": self.insufficient_data,
        }
