"""DCI (Eastwood & Williams, 2018): disentanglement, completeness and informativeness of codes against factors.

An importance matrix R [code dims x factors] comes from one regressor per factor (Lasso on standardised codes:
|coefficients|, as in the paper; or gradient-boosted regression trees' feature importances). disentanglement_lib's
own computation (classifiers on discretised factors, accuracy as informativeness) is
`core.metrics.disentanglement.dci_reference`, the one the reports use; D and C come from the same function.
Disentanglement: each code dimension's 1 - entropy (base = number of factors) of its row of R, weighted by the
dimension's share of total importance. Completeness: each factor's 1 - entropy (base = number of code dimensions)
of its column, weighted by the factor's share of importance. Informativeness: the regressors' held-out R^2 per
factor, averaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.metrics.disentanglement import check_codes, disentanglement_completeness


@dataclass
class DCIResult:
    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray = field(repr=False)  # [code dims, factors]
    per_factor_r2: np.ndarray = field(repr=False)


def dci(codes: np.ndarray, factors: np.ndarray, train_fraction: float = 0.8, method: str = "lasso",
        alpha: float = 0.01, seed: int = 0) -> DCIResult:
    """DCI scores of codes [N, D] against ground-truth factors [N, K] (continuous, any scale)."""
    codes, factors = check_codes(codes, factors)
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
    disent, complete = disentanglement_completeness(importance)
    return DCIResult(disent, complete, float(np.clip(r2, 0, 1).mean()), importance, r2)
