"""disentanglement_lib's scores with ground-truth factors: DCI (reference mode), MIG, SAP, FactorVAE and beta-VAE.

Each follows google-research/disentanglement_lib (evaluation/metrics/*.py, read at commit 86a644d) in procedure,
discretisation and estimators; where we differ it says so:
- Factors. The library's data sets have discrete factors; SynthFaces factors are continuous in [0, 1], so where a
  metric treats factors as classes they are cut into `FACTOR_BINS` equal-width bins (binary factors stay 2).
- Codes are never standardised (as in the library) and are [N, D] here (the library stores them transposed).
- `representation(factors) -> codes` plays the library's "encode an observation of these factors": it may render
  the factors and encode the image (a VAE), or map them to a latent (the generator's z, its W, NICE codes).
- Sample sizes are arguments; the library's defaults (10,000 train / 5,000 test, 10,000 for variances) are the
  defaults here, and the report card states the sizes it used.
- FactorVAE: the library indexes its argmin into the active dimensions as if into all of them (wrong votes once a
  dimension is pruned) and reports `num_active_dims` as the total; both are corrected here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

FACTOR_BINS = 5  # classes per continuous factor where a metric needs discrete factors
CODE_BINS = 20  # disentanglement_lib's histogram discretiser for codes (MIG)

Representation = Callable[[np.ndarray], np.ndarray]  # factors [N, K] -> codes [N, D]
FactorSampler = Callable[[int, np.random.Generator], np.ndarray]  # (n, rng) -> factors [n, K]


def check_codes(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes [N, D] and factors [N, K] as float64, refused with a clear error unless matched, finite and N >= 10."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 10:
        raise ValueError(f"need codes [N, D] and factors [N, K] with the same N >= 10, got {codes.shape}, "
                         f"{factors.shape}")
    if not (np.isfinite(codes).all() and np.isfinite(factors).all()):
        raise ValueError("codes and factors must be finite")
    return codes, factors


def histogram_discretize(values: np.ndarray, bins: int) -> np.ndarray:
    """Per column: equal-width bins from its min to its max, labels 0..bins-1 (the library's discretiser)."""
    out = np.zeros(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        edges = np.histogram(values[:, j], bins)[1]
        out[:, j] = np.digitize(values[:, j], edges[:-1]) - 1
    return out


def factor_classes(factors: np.ndarray, bins: int = FACTOR_BINS) -> np.ndarray:
    """Continuous factors in [0, 1] cut into `bins` equal-width classes; factors with <= bins values kept as
    their own classes (e.g. binary glasses)."""
    out = np.zeros(factors.shape, dtype=np.int64)
    for j in range(factors.shape[1]):
        values = np.unique(factors[:, j])
        if len(values) <= bins:
            out[:, j] = np.searchsorted(values, factors[:, j])
        else:
            out[:, j] = np.clip((factors[:, j] * bins).astype(np.int64), 0, bins - 1)
    return out


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    p = p / np.clip(p.sum(axis=axis, keepdims=True), 1e-12, None)
    p = np.clip(p, 1e-12, None)
    return -(p * np.log(p)).sum(axis=axis) / np.log(base)


def disentanglement_completeness(importance: np.ndarray) -> tuple[float, float]:
    """DCI's D and C from an importance matrix [codes, factors], as disentanglement_lib computes them: each code's
    1 - entropy over factors weighted by its share of importance, and each factor's 1 - entropy over codes."""
    r = np.abs(np.asarray(importance, dtype=np.float64)) + 1e-11
    d, k = r.shape
    code_weight, factor_weight = r.sum(1) / r.sum(), r.sum(0) / r.sum()
    disent = float((code_weight * (1 - _entropy(r, max(k, 2), axis=1))).sum())
    complete = float((factor_weight * (1 - _entropy(r, max(d, 2), axis=0))).sum())
    return disent, complete


@dataclass
class DCIReference:
    disentanglement: float
    completeness: float
    informativeness_train: float  # mean classification accuracy over factors
    informativeness_test: float
    importance: np.ndarray = field(repr=False)  # [codes, factors]


def _fit_factor(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, seed: int,
                trees: int = 100) -> tuple[np.ndarray, float, float]:
    """One factor's classifier: (feature importances, train accuracy, test accuracy)."""
    from sklearn.ensemble import GradientBoostingClassifier
    if len(np.unique(y_tr)) < 2:  # a factor constant in the sample carries no information
        return np.zeros(x_tr.shape[1]), 1.0, 1.0
    model = GradientBoostingClassifier(n_estimators=trees, random_state=seed).fit(x_tr, y_tr)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(x_tr) == y_tr)),
            float(np.mean(model.predict(x_te) == y_te)))


def dci_reference(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
                  factors_test: np.ndarray, seed: int = 0, n_jobs: Optional[int] = -1, trees: int = 100
                  ) -> DCIReference:
    """DCI as disentanglement_lib computes it: one GradientBoostingClassifier (sklearn defaults: `trees` = 100
    boosting stages; fewer only for smoke tests) per discretised factor; importances are its
    feature_importances_; informativeness is accuracy. The factors' classifiers are fitted on `n_jobs` threads
    (-1: every core; the tree builder releases the GIL); the result does not depend on it."""
    from joblib import Parallel, delayed
    x_tr, f_tr = check_codes(codes_train, factors_train)
    x_te, f_te = check_codes(codes_test, factors_test)
    y_tr, y_te = factor_classes(f_tr), factor_classes(f_te)
    fits = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_factor)(x_tr, y_tr[:, j], x_te, y_te[:, j], seed, trees) for j in range(y_tr.shape[1]))
    importance = np.stack([f[0] for f in fits], axis=1)
    acc_tr, acc_te = np.array([f[1] for f in fits]), np.array([f[2] for f in fits])
    disent, complete = disentanglement_completeness(importance)
    return DCIReference(disent, complete, float(acc_tr.mean()), float(acc_te.mean()), importance)


def _mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a columns, b columns] discrete mutual information in nats (sklearn's mutual_info_score)."""
    from sklearn.metrics import mutual_info_score
    return np.array([[mutual_info_score(b[:, j], a[:, i]) for j in range(b.shape[1])] for i in range(a.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, code_bins: int = CODE_BINS) -> float:
    """Mutual information gap: per factor, the gap between the two codes that share most information with it,
    divided by the factor's entropy; averaged over factors (codes discretised in 20 bins each)."""
    codes, factors = check_codes(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least two code dimensions")
    y = factor_classes(factors)
    m = _mutual_info(histogram_discretize(codes, code_bins), y)
    entropy = np.array([_mutual_info(y[:, [j]], y[:, [j]])[0, 0] for j in range(y.shape[1])])
    top = np.sort(m, axis=0)[::-1]
    keep = entropy > 0
    return float(np.mean((top[0, keep] - top[1, keep]) / entropy[keep]))


def sap(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: Optional[np.ndarray] = None,
        factors_test: Optional[np.ndarray] = None, continuous: bool = True) -> float:
    """Separated attribute predictability: per factor, the gap between the two codes that predict it best, one
    code at a time; averaged. Continuous factors (the default for SynthFaces): the R^2 of a 1-D linear fit on the
    train set. Discrete: LinearSVC(C=0.01, balanced) accuracy on the test set (the library's gin default; it stays
    well below 1 even for perfect codes, since a linear SVM on one scalar cannot separate many classes)."""
    x_tr, f_tr = check_codes(codes_train, factors_train)
    d, k = x_tr.shape[1], f_tr.shape[1]
    if d < 2:
        raise ValueError("SAP needs at least two code dimensions")
    score = np.zeros((d, k))
    if continuous:
        for i in range(d):
            for j in range(k):
                cov = np.cov(x_tr[:, i], f_tr[:, j], ddof=1)
                if cov[0, 0] > 1e-12 and cov[1, 1] > 1e-12:
                    score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    else:
        from sklearn.svm import LinearSVC
        if codes_test is None or factors_test is None:
            raise ValueError("discrete SAP needs a test set")
        x_te, f_te = check_codes(codes_test, factors_test)
        y_tr, y_te = factor_classes(f_tr), factor_classes(f_te)
        for i in range(d):
            for j in range(k):
                model = LinearSVC(C=0.01, class_weight="balanced").fit(x_tr[:, [i]], y_tr[:, j])
                score[i, j] = np.mean(model.predict(x_te[:, [i]]) == y_te[:, j])
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def _fixed_factor_batch(sample: FactorSampler, k: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    factors = sample(batch, rng)
    factors[:, k] = factors[0, k]
    return factors


def factor_vae_score(representation: Representation, sample: FactorSampler, num_factors: int, batch: int = 64,
                     num_train: int = 10_000, num_eval: int = 5_000, num_variance: int = 10_000,
                     threshold: float = 0.05, seed: int = 0) -> dict[str, float]:
    """FactorVAE score (Kim & Mnih): codes scaled by their global std; in a batch with one factor fixed, the
    dimension of least relative variance votes for that factor; a majority-vote classifier maps dimensions to
    factors; its accuracy on fresh votes is the score. Dimensions with std below `threshold` are pruned."""
    rng = np.random.default_rng(seed)
    global_var = np.var(representation(sample(num_variance, rng)), axis=0, ddof=1)
    active = np.sqrt(global_var) >= threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    dims = len(global_var)

    def votes(count: int) -> np.ndarray:
        table = np.zeros((num_factors, dims))
        for _ in range(count):
            k = int(rng.integers(num_factors))
            local = np.var(representation(_fixed_factor_batch(sample, k, batch, rng)), axis=0, ddof=1)
            ratio = np.where(active, local / np.where(active, global_var, 1.0), np.inf)
            table[k, int(np.argmin(ratio))] += 1
        return table

    train = votes(num_train)
    classes = train.argmax(0)
    evaluation = votes(num_eval)
    pick = np.arange(dims)
    return {"train_accuracy": float(train[classes, pick].sum() / train.sum()),
            "eval_accuracy": float(evaluation[classes, pick].sum() / evaluation.sum()),
            "num_active_dims": int(active.sum())}


def beta_vae_score(representation: Representation, sample: FactorSampler, num_factors: int, batch: int = 64,
                   num_train: int = 10_000, num_eval: int = 5_000, seed: int = 0) -> dict[str, float]:
    """beta-VAE score (Higgins et al.): pairs of batches share one factor; the mean absolute code difference over
    the batch is the feature, the shared factor the label; a logistic regression (sklearn defaults) predicts it."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(seed)

    def points(count: int) -> tuple[np.ndarray, np.ndarray]:
        features, labels = [], []
        for _ in range(count):
            k = int(rng.integers(num_factors))
            f1, f2 = sample(batch, rng), sample(batch, rng)
            f2[:, k] = f1[:, k]
            features.append(np.abs(representation(f1) - representation(f2)).mean(0))
            labels.append(k)
        return np.stack(features), np.array(labels)

    x_tr, y_tr = points(num_train)
    x_ev, y_ev = points(num_eval)
    model = LogisticRegression(random_state=seed).fit(x_tr, y_tr)
    return {"train_accuracy": float(model.score(x_tr, y_tr)), "eval_accuracy": float(model.score(x_ev, y_ev))}
