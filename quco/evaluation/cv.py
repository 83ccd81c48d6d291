"""Cross-validated predictions, grouped so that no row is scored by a model fitted on it.

Rows that share a group (the same question answered in two conditions) always
fall in the same fold, so a question's other answer cannot leak its label
into the model that scores it either.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from quco._deps import require
from quco.errors import BadInputError

#: default number of folds
N_FOLDS = 5


class ProbModel(Protocol):
    def fit(self, X: Any, y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


SplitHook = Callable[[int, np.ndarray, np.ndarray], None]


def group_folds(
    groups: Sequence[Any], n_splits: int = N_FOLDS, y: Sequence[int] | np.ndarray | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of a grouped k-fold split over ``groups``.

    With labels ``y``: scikit-learn's ``StratifiedGroupKFold`` (shuffled with
    ``seed``), a GroupKFold that also keeps each fold's share of
    hallucinations close to the whole set's. Without: plain ``GroupKFold``.
    Stratifying matters with few positives or negatives: folds whose label
    share differs from their training folds' bias a fitted intercept against
    them, which drags cross-validated ROC-AUC of a weak detector well below
    0.5 (seen: a length model at 0.25 whose raw feature scored 0.49).

    Uses ``min(n_splits, number of groups)`` folds; raises when there are fewer
    than two groups. Every split is checked: no group on both sides.
    """
    g = np.asarray(groups)
    n_groups = len(set(g.tolist()))
    if n_groups < 2:
        raise BadInputError("cross-validation needs at least two distinct questions")
    ms = require("sklearn.model_selection")
    k = min(n_splits, n_groups)
    if y is not None:
        ya = np.asarray(y, dtype=int)
        splitter = ms.StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            splits = list(splitter.split(np.zeros(g.size), ya, groups=g))
    else:
        splits = ms.GroupKFold(n_splits=k).split(np.zeros(g.size), groups=g)
    out = []
    for tr, te in splits:
        if set(g[tr].tolist()) & set(g[te].tolist()):  # pragma: no cover - GroupKFold guarantees this
            raise RuntimeError("a group fell on both sides of a split")
        out.append((np.asarray(tr), np.asarray(te)))
    return out


def cross_val_proba(
    X: np.ndarray,
    y: Sequence[int] | np.ndarray,
    groups: Sequence[Any],
    make_model: Callable[[], ProbModel],
    *,
    n_splits: int = N_FOLDS,
    on_split: SplitHook | None = None,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-fold p(hallucinated) for every row.

    Each row's probability comes from a model fitted on the other folds only.
    A training fold holding one class only yields its class share as the
    prediction.

    Args:
        X: 2-D feature array (may hold NaN when the model handles it).
        y: labels, 1 = hallucinated.
        groups: group of each row (question id); a group never spans folds
            (stratified by label, see :func:`group_folds`).
        make_model: returns a fresh, unfitted model with ``fit`` and ``predict_proba``.
        n_splits: folds.
        on_split: called with (fold, train_idx, test_idx) before each fit
            (instrumentation for tests and logs).
        folds: precomputed :func:`group_folds` of ``groups`` (reused across
            detectors); checked again for group overlap.

    Returns:
        An array of probabilities, one per row.
    """
    ya = np.asarray(y, dtype=int).ravel()
    Xa = np.asarray(X, dtype=float)
    if Xa.ndim != 2 or Xa.shape[0] != ya.size or len(groups) != ya.size:
        raise BadInputError("X, y and groups must describe the same rows")
    out = np.full(ya.size, np.nan)
    g = np.asarray(groups)
    for k, (tr, te) in enumerate(folds if folds is not None else group_folds(groups, n_splits, ya)):
        if set(g[tr].tolist()) & set(g[te].tolist()):
            raise BadInputError("a question falls on both sides of a cross-validation split")
        if on_split is not None:
            on_split(k, tr, te)
        ytr = ya[tr]
        if 0 < ytr.sum() < ytr.size:
            model = make_model()
            model.fit(Xa[tr], ytr)
            out[te] = np.asarray(model.predict_proba(Xa[te]))[:, 1]
        else:
            out[te] = float(ytr.mean()) if ytr.size else 0.5
    return out
