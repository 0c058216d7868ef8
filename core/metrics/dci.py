"""DCI (Eastwood & Williams, 2018): disentanglement, completeness and informativeness of codes against factors.

An importance matrix R [code dims x factors] comes from one regressor per factor (Lasso on standardised codes:
|coefficients|, as in the paper; or gradient-boosted trees: feature importances, as disentanglement_lib does).
Disentanglement: each code dimension's 1 - entropy (base = number of factors) of its row of R, weighted by the
dimension's share of total importance. Completeness: each factor's 1 - entropy (base = number of code dimensions)
of its column, weighted by the factor's share of importance. Informativeness: the regressors' held-out R^2 per
factor, averaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DCIResult:
    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray = field(repr=False)  # [code dims, factors]
    per_factor_r2: np.ndarray = field(repr=False)


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    p = np.clip(p, 1e-12, None)
    return -(p * np.log(p)).sum(axis=axis) / np.log(base)


def dci(codes: np.ndarray, factors: np.ndarray, train_fraction: float = 0.8, method: str = "lasso",
        alpha: float = 0.01, seed: int = 0) -> DCIResult:
    """DCI scores of codes [N, D] against ground-truth factors [N, K] (continuous, any scale)."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 10:
        raise ValueError(f"need codes [N, D] and factors [N, K] with the same N >= 10, got {codes.shape}, "
                         f"{factors.shape}")
    if not (np.isfinite(codes).all() and np.isfinite(factors).all()):
        raise ValueError("codes and factors must be finite")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(codes))
    cut = int(len(codes) * train_fraction)
    tr, te = order[:cut], order[cut:]
    mu, sd = codes[tr].mean(0), codes[tr].std(0) + 1e-8
    x = (codes - mu) / sd
    d, k = codes.shape[1], factors.shape[1]
    importance = np.zeros((d, k))
    r2 = np.zeros(k)
    for j in range(k):
        y = factors[:, j]
        if method == "lasso":
            from sklearn.linear_model import Lasso
            model = Lasso(alpha=alpha * y[tr].std() if y[tr].std() > 0 else alpha, max_iter=5000)
            model.fit(x[tr], y[tr])
            importance[:, j] = np.abs(model.coef_)
        elif method == "gbt":
            from sklearn.ensemble import GradientBoostingRegressor
            model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=seed)
            model.fit(x[tr], y[tr])
            importance[:, j] = model.feature_importances_
        else:
            raise ValueError("method must be 'lasso' or 'gbt'")
        resid = ((model.predict(x[te]) - y[te]) ** 2).sum()
        total = ((y[te] - y[te].mean()) ** 2).sum()
        r2[j] = 1 - resid / total if total > 0 else 0.0
    total = importance.sum()
    if total <= 0:
        return DCIResult(0.0, 0.0, float(np.clip(r2, 0, 1).mean()), importance, r2)
    rows = importance / np.clip(importance.sum(1, keepdims=True), 1e-12, None)
    cols = importance / np.clip(importance.sum(0, keepdims=True), 1e-12, None)
    weight = importance.sum(1) / total
    disent = float((weight * (1 - _entropy(rows, max(k, 2), axis=1))).sum())
    factor_weight = importance.sum(0) / total
    complete = float((factor_weight * (1 - _entropy(cols, max(d, 2), axis=0))).sum())
    return DCIResult(disent, complete, float(np.clip(r2, 0, 1).mean()), importance, r2)
