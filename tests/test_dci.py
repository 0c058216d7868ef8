"""DCI on codes with known structure: axis-aligned, rotated, and uninformative."""
from __future__ import annotations

import numpy as np
import pytest

from core.metrics.dci import dci


@pytest.fixture(scope="module")
def factors():
    return np.random.default_rng(0).uniform(size=(1500, 4))


@pytest.mark.parametrize("method", ["lasso", "gbt"])
def test_axis_aligned_codes_score_high_and_rotated_ones_lower(factors, method):
    rng = np.random.default_rng(1)
    aligned = factors[:, [2, 0, 3, 1]] + 0.01 * rng.normal(size=factors.shape)
    good = dci(aligned, factors, method=method)
    assert good.disentanglement > 0.85 and good.completeness > 0.85 and good.informativeness > 0.9
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = dci(factors @ q, factors, method=method)
    assert rotated.disentanglement < good.disentanglement - 0.3
    assert rotated.informativeness > 0.8  # still informative, just entangled
    noise = dci(rng.normal(size=(1500, 4)), factors, method=method)
    assert noise.informativeness < 0.1


def test_bad_input(factors):
    with pytest.raises(ValueError, match="same N"):
        dci(factors[:10], factors)
    bad = factors.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        dci(bad, factors)
    with pytest.raises(ValueError, match="method"):
        dci(factors, factors, method="forest")
