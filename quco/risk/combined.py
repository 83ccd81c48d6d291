"""The fitted risk scorer: a calibrated probability of hallucination from both sides.

:class:`RiskScorer` follows scikit-learn's estimator contract: ``__init__``
stores keyword-only options, :meth:`RiskScorer.fit` validates and learns, and
learned state ends in ``_``. The model is a logistic regression over the
standardized features, with an explicit missing indicator for every feature
that was missing in training (a NaN is imputed with the training median and
its indicator set to 1); optionally the logistic output goes through an
isotonic map fitted on cross-validated predictions.

Fitting and prediction need numpy only (isotonic calibration needs scikit-learn). A scorer is saved
and loaded as JSON — coefficients, scaler, imputation values, isotonic
thresholds, feature names and provenance — never pickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from quco._deps import require
from quco._version import __version__
from quco.errors import BadInputError
from quco.risk.features import (
    ALL_FEATURES,
    CLAIM_FEATURES,
    CONFIDENCE_FEATURES,
    DATA_FEATURES,
    NGRAM_FEATURES,
    Signals,
    feature_vector,
)
from quco.risk.policies import FlarePolicy, QucoPolicy
from quco.types import Reason, Risk

FORMAT = "quco-risk-scorer"
FORMAT_VERSION = 1
#: the scorer shipped with quco (fitted by scripts/fit_default_scorer.py)
DEFAULT_MODEL = "combined-smollm2.json"

FeatureSpec = str | Sequence[str]
Rows = Sequence[Signals] | Sequence[Mapping[str, float]] | np.ndarray


def resolve_features(spec: FeatureSpec) -> tuple[str, ...]:
    """Feature names of ``"all"``, ``"data"``, ``"confidence"``, ``"ngram"`` or an explicit list.

    ``"all"`` and ``"data"`` leave out the optional n-gram novelty group
    (:data:`~quco.risk.features.NGRAM_FEATURES`); name it, or add
    ``"+ngram"`` (``"all+ngram"``, ``"data+ngram"``), to fit with it.
    """
    if isinstance(spec, str):
        table = {
            "all": ALL_FEATURES,
            "data": DATA_FEATURES,
            "confidence": CONFIDENCE_FEATURES,
            "ngram": NGRAM_FEATURES,
            "all+ngram": ALL_FEATURES + NGRAM_FEATURES,
            "data+ngram": DATA_FEATURES + NGRAM_FEATURES,
        }
        if spec not in table:
            raise BadInputError(
                f"features must be all, data, confidence, ngram, all+ngram, data+ngram or a list of names, got {spec!r}"
            )
        return table[spec]
    names = tuple(spec)
    known = ALL_FEATURES + CLAIM_FEATURES + NGRAM_FEATURES
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise BadInputError(f"unknown feature names {unknown or '(none)'}; known: {', '.join(known)}")
    return names


def _matrix(x: Rows | Signals | Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    items: Any = [x] if isinstance(x, (Signals, Mapping)) else x
    if isinstance(items, np.ndarray):
        arr = np.asarray(items, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise BadInputError(f"expected a 2-D array with {len(names)} columns ({', '.join(names)})")
        return arr
    rows = []
    for r in items:
        d = feature_vector(r) if isinstance(r, Signals) else r
        if not isinstance(d, Mapping):
            raise BadInputError("rows must be Signals, feature dicts or a 2-D array")
        rows.append([float(d.get(n, math.nan)) for n in names])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(names))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float = 1.0, *, max_iter: int = 100,
                 tol: float = 1e-8) -> tuple[np.ndarray, float]:
    """L2-penalized logistic regression by Newton's method (scikit-learn's objective).

    Minimizes ``C * sum(log-loss) + 0.5 * ||w||^2`` (intercept not penalized),
    the objective of ``sklearn.linear_model.LogisticRegression(C=C)``; the
    tests check that both give the same coefficients. Newton steps on these
    small, standardized problems converge in a few iterations, far faster than
    a general-purpose solver.

    Returns:
        (coefficients, intercept).
    """
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    reg = np.ones(d + 1)
    reg[-1] = 0.0
    w = np.zeros(d + 1)

    def loss(w: np.ndarray) -> float:
        z = A @ w
        return float(C * np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(reg * w * w))

    f = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(A @ w)
        g = C * (A.T @ (p - y)) + reg * w
        H = C * (A.T * (p * (1 - p))) @ A + np.diag(reg) + 1e-10 * np.eye(d + 1)
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:
            w_new = w - t * step
            f_new = loss(w_new)
            if f_new <= f + 1e-12 or t < 1e-6:
                break
            t *= 0.5
        done = abs(f - f_new) <= tol * max(1.0, abs(f))
        w, f = w_new, f_new
        if done:
            break
    return w[:-1].copy(), float(w[-1])


class RiskScorer:
    """Logistic regression (optionally isotonic-calibrated) over quco's features.

    Higher probability = riskier (1 = hallucinated).

    Args:
        features: ``"all"``, ``"data"``, ``"confidence"`` or a list of names
            from ``quco.risk.features.ALL_FEATURES``.
        calibration: ``"none"`` or ``"isotonic"`` (isotonic map fitted on
            ``cv``-fold cross-validated logistic outputs).
        C: inverse L2 regularization strength of the logistic regression.
        threshold: probability at or above which :meth:`assess` flags.
        cv: folds for the isotonic calibration.
        random_state: seed for the calibration folds.
    """

    name = "combined"

    def __init__(
        self,
        *,
        features: FeatureSpec = "all",
        calibration: str = "none",
        C: float = 1.0,
        threshold: float = 0.5,
        cv: int = 5,
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.calibration = calibration
        self.C = C
        self.threshold = threshold
        self.cv = cv
        self.random_state = random_state

    # -- scikit-learn contract -------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "features": self.features,
            "calibration": self.calibration,
            "C": self.C,
            "threshold": self.threshold,
            "cv": self.cv,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> RiskScorer:
        for k, v in params.items():
            if k not in self.get_params():
                raise BadInputError(f"unknown option {k!r}")
            setattr(self, k, v)
        return self

    def fit(self, X: Rows, y: Sequence[int] | np.ndarray, *, provenance: Mapping[str, Any] | None = None) -> RiskScorer:
        """Learn from feature rows and labels (1 = hallucinated).

        Args:
            X: Signals, feature dicts, or a 2-D array with one column per feature.
            y: labels, 0 or 1; both must occur.
            provenance: free-form facts recorded in the saved model (data rows,
                index hash, model name...).

        Returns:
            self.
        """
        if self.calibration not in ("none", "isotonic"):
            raise BadInputError(f"calibration must be 'none' or 'isotonic', got {self.calibration!r}")
        names = resolve_features(self.features)
        A = _matrix(X, names)
        ya = np.asarray(y, dtype=float).ravel()
        if A.shape[0] != ya.size:
            raise BadInputError(f"{A.shape[0]} rows but {ya.size} labels")
        if not np.isin(ya, (0.0, 1.0)).all():
            raise BadInputError("labels must be 0 (correct) or 1 (hallucinated)")
        if ya.size < 2 or len(set(ya.tolist())) < 2:
            raise BadInputError("fitting needs both labels (0 and 1) among the rows")
        if np.isinf(A).any():
            raise BadInputError("features must be finite or NaN")
        self.feature_names_ = names
        miss = np.isnan(A)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(miss.all(axis=0, keepdims=True), 0.0, A), axis=0)
        self.impute_ = np.nan_to_num(med, nan=0.0)
        self.indicators_ = tuple(n for n, m in zip(names, miss.any(axis=0), strict=True) if m)
        Z = self._design(A)
        mean = Z.mean(axis=0)
        scale = Z.std(axis=0)
        scale[scale < 1e-12] = 1.0
        self.mean_, self.scale_ = mean, scale
        Zs = (Z - mean) / scale
        self.coef_, self.intercept_ = fit_logistic(Zs, ya, self.C)
        self.isotonic_: tuple[np.ndarray, np.ndarray] | None = None
        if self.calibration == "isotonic":
            self.isotonic_ = self._fit_isotonic(Zs, ya.astype(int))
        self.n_train_ = int(ya.size)
        #: τ_entity / τ_cooc fitted for an index with the model (``quco calibrate --fit-thresholds``), or None
        self.thresholds_: dict[str, Any] | None = None
        self.provenance_ = {
            "n_rows": int(ya.size),
            "positives": int(ya.sum()),
            "quco_version": __version__,
            "fitted_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **dict(provenance or {}),
        }
        return self

    def _fit_isotonic(self, Zs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ms = require("sklearn.model_selection")
        iso_mod = require("sklearn.isotonic")
        n_pos = int(y.sum())
        folds = max(2, min(self.cv, n_pos, y.size - n_pos))
        skf = ms.StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        held = np.zeros(y.size)
        for tr, te in skf.split(Zs, y):
            w, b = fit_logistic(Zs[tr], y[tr].astype(float), self.C)
            held[te] = _sigmoid(Zs[te] @ w + b)
        iso = iso_mod.IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(held, y)
        return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise BadInputError("this RiskScorer is not fitted: call fit() or RiskScorer.load()")

    def _design(self, A: np.ndarray) -> np.ndarray:
        miss = np.isnan(A)
        filled = np.where(miss, self.impute_[None, :], A)
        idx = [self.feature_names_.index(n) for n in self.indicators_]
        return np.hstack([filled, miss[:, idx].astype(float)])

    @property
    def columns_(self) -> tuple[str, ...]:
        """Design-matrix columns: the features, then ``missing:<name>`` indicators."""
        return tuple(self.feature_names_) + tuple(f"missing:{n}" for n in self.indicators_)

    def _standardized(self, X: Rows | Signals | Mapping[str, float], neutral: Sequence[str] = ()) -> np.ndarray:
        self._check_fitted()
        A = _matrix(X, self.feature_names_)
        Z = (self._design(A) - self.mean_) / self.scale_
        if neutral:  # at the training mean: the column adds nothing to the logit
            cols = [i for i, c in enumerate(self.columns_) if c.split(":", 1)[-1] in set(neutral)]
            Z[:, cols] = 0.0
        return Z

    def decision_function(self, X: Rows | Signals | Mapping[str, float], *, neutral: Sequence[str] = ()) -> np.ndarray:
        """Logit of the logistic model (before calibration); see :meth:`predict_proba` for ``neutral``."""
        return self._standardized(X, neutral) @ self.coef_ + self.intercept_

    def predict_proba(self, X: Rows | Signals | Mapping[str, float], *, neutral: Sequence[str] = ()) -> np.ndarray:
        """Probabilities, shape (n, 2): column 1 is p(hallucinated).

        Args:
            X: one Signals or feature dict, a sequence of them, or a 2-D array
                whose columns are ``feature_names_``.
            neutral: features read as neither risky nor safe: their columns
                (and missing indicators) are set to the training mean, so they
                add nothing to the logit. An ``out_of_coverage`` answer's data
                features are (:mod:`quco.risk.coverage`): a missing value would
                otherwise be read through its missing indicator's coefficient.
        """
        p = _sigmoid(self.decision_function(X, neutral=neutral))
        if self.isotonic_ is not None:
            xs, ys = self.isotonic_
            p = np.interp(p, xs, ys)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Rows | Signals | Mapping[str, float]) -> np.ndarray:
        """1 where p(hallucinated) >= ``threshold``."""
        return (self.predict_proba(X)[:, 1] >= self.threshold).astype(int)

    def probability(self, signals: Signals | Mapping[str, float], *, neutral: Sequence[str] = ()) -> float:
        """p(hallucinated) of one answer (``neutral``: see :meth:`predict_proba`)."""
        return float(self.predict_proba(signals, neutral=neutral)[0, 1])

    # -- explanations -------------------------------------------------------

    def contributions(self, signals: Signals | Mapping[str, float], *, neutral: Sequence[str] = ()) -> dict[str, float]:
        """Per design column: coefficient × standardized value (positive = pushes risk up)."""
        z = self._standardized(signals, neutral)[0]
        return dict(zip(self.columns_, (self.coef_ * z).tolist(), strict=True))

    def assess(self, signals: Signals, *, top: int = 3, neutral: Sequence[str] = ()) -> Risk:
        """Probability, flag and reasons: the features that pushed the probability up most, then the rule reasons.

        ``neutral``: features read as neither risky nor safe (:meth:`predict_proba`).
        """
        p = self.probability(signals, neutral=neutral)
        feats = feature_vector(signals)
        contrib = sorted(self.contributions(feats, neutral=neutral).items(), key=lambda kv: -kv[1])
        reasons: list[Reason] = []
        for col, c in contrib[:top]:
            if c <= 0:
                break
            if col.startswith("missing:"):
                f = col.split(":", 1)[1]
                msg = f"{f} could not be computed (raises the risk by {c:+.2f} logit)"
                val = None
            else:
                val = feats.get(col, math.nan)
                msg = f"{col} = {val:.3g} raises the risk by {c:+.2f} logit"
            reasons.append(Reason("feature", msg, col, None if val is None or math.isnan(val) else float(val)))
        reasons.extend(QucoPolicy().assess(signals).reasons)
        reasons.extend(r for r in FlarePolicy().assess(signals).reasons if r.kind == "low_prob_token")
        return Risk(p, p >= self.threshold, self.name, tuple(reasons))

    # -- persistence --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (see :meth:`from_dict`)."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": "logistic" + ("+isotonic" if self.isotonic_ is not None else ""),
            "options": {
                "features": list(self.feature_names_),
                "calibration": self.calibration,
                "C": self.C,
                "threshold": self.threshold,
                "cv": self.cv,
                "random_state": self.random_state,
            },
            "feature_names": list(self.feature_names_),
            "indicators": list(self.indicators_),
            "columns": list(self.columns_),
            "impute": [float(v) for v in self.impute_],
            "scaler": {"mean": [float(v) for v in self.mean_], "scale": [float(v) for v in self.scale_]},
            "coef": [float(v) for v in self.coef_],
            "intercept": self.intercept_,
            "isotonic": None
            if self.isotonic_ is None
            else {"x": [float(v) for v in self.isotonic_[0]], "y": [float(v) for v in self.isotonic_[1]]},
            "provenance": self.provenance_,
            **({"thresholds": self.thresholds_} if getattr(self, "thresholds_", None) else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskScorer:
        """Rebuild a fitted scorer from :meth:`to_dict` output."""
        if d.get("format") != FORMAT:
            raise BadInputError(f"not a quco risk-scorer file (format {d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise BadInputError(f"risk-scorer format {d.get('format_version')} is newer than this quco")
        try:
            opts = d["options"]
            s = cls(
                features=list(opts["features"]),
                calibration=opts["calibration"],
                C=float(opts["C"]),
                threshold=float(opts["threshold"]),
                cv=int(opts["cv"]),
                random_state=int(opts["random_state"]),
            )
            s.feature_names_ = resolve_features(d["feature_names"])
            s.indicators_ = tuple(d["indicators"])
            s.impute_ = np.asarray(d["impute"], dtype=float)
            s.mean_ = np.asarray(d["scaler"]["mean"], dtype=float)
            s.scale_ = np.asarray(d["scaler"]["scale"], dtype=float)
            s.coef_ = np.asarray(d["coef"], dtype=float)
            s.intercept_ = float(d["intercept"])
            iso = d.get("isotonic")
            s.isotonic_ = None if not iso else (np.asarray(iso["x"], dtype=float), np.asarray(iso["y"], dtype=float))
            s.provenance_ = dict(d.get("provenance") or {})
            s.thresholds_ = dict(d["thresholds"]) if d.get("thresholds") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"risk-scorer file is incomplete or malformed: {exc}") from exc
        ncol = len(s.feature_names_) + len(s.indicators_)
        if not (s.coef_.size == s.mean_.size == s.scale_.size == ncol and s.impute_.size == len(s.feature_names_)):
            raise BadInputError("risk-scorer file has inconsistent array sizes")
        s.n_train_ = int(s.provenance_.get("n_rows", 0))
        return s

    def save(self, path: str | Path) -> Path:
        """Write the scorer as JSON."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> RiskScorer:
        """Read a scorer saved by :meth:`save`."""
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise BadInputError(f"no risk-scorer file at {p}") from exc
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{p} is not valid JSON: {exc}") from exc
        return cls.from_dict(d)


#: the fitted model is the combined policy
CombinedPolicy = RiskScorer


def load_default_scorer() -> RiskScorer:
    """The scorer shipped in ``quco/data`` (fitted on HaluEval QA rows 0–1999; see its provenance)."""
    ref = resources.files("quco") / "data" / DEFAULT_MODEL
    if not ref.is_file():
        raise BadInputError(f"the default risk model quco/data/{DEFAULT_MODEL} is missing: reinstall quco")
    return RiskScorer.from_dict(json.loads(ref.read_text(encoding="utf-8")))
