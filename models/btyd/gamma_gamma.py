"""Gamma-Gamma spend model by maximum likelihood (Fader, Hardie and Lee 2005b).

A customer's purchases are worth Gamma(p, nu) each, with nu ~ Gamma(q, v) across customers;
spend is independent of how often they buy. Given x purchases of mean value m, the expected
value of the next purchase is p (v + x m) / (p x + q - 1): the customer's own mean, shrunk
towards the population mean p v / (q - 1). Fitted on the customers with at least one repeat
purchase and a positive mean, over the logarithms of (p, q, v) with scipy's L-BFGS-B; checked
against `lifetimes` in `tests/models/test_btyd.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters and how many customers they come from."""

    p: float
    q: float
    v: float
    customers: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @property
    def population_mean(self) -> float:
        """Mean value of a purchase across customers (infinite when q <= 1)."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("inf")


def fit_gamma_gamma(frequency: np.ndarray, mean_spend: np.ndarray) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from customers with x > 0 and m > 0.

    Raises ValueError with fewer than two such customers.
    """
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(mean_spend, dtype=np.float64)
    usable = np.isfinite(x) & np.isfinite(m) & (x > 0) & (m > 0)
    x, m = x[usable], m[usable]
    if len(x) < 2:
        raise ValueError(f"Gamma-Gamma needs customers with repeat purchases of positive value; {len(x)} have any")
    scale = float(np.mean(m))  # money in units of the mean spend during the fit: v of order one
    m_scaled = m / scale

    def objective(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        px = p * x
        ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m_scaled)
              + px * np.log(x) - (px + q) * np.log(x * m_scaled + v))
        return -float(np.mean(ll))

    result = minimize(objective, np.array([0.0, np.log(2.0), 0.0]), method="L-BFGS-B",
                      bounds=[(-12.0, 12.0)] * 3, options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9})
    p, q, v = np.exp(result.x)
    return GammaGammaParams(float(p), float(q), float(v * scale), int(len(x)))


def expected_spend(params: GammaGammaParams, frequency: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
    """Expected value of a purchase given x repeat purchases of mean m (m below 0 counts as 0).

    With q <= 1 the population mean is infinite and the formula meaningless: the customer's
    own mean is returned then (NaN without purchases).
    """
    x = np.nan_to_num(np.asarray(frequency, dtype=np.float64), nan=0.0)
    m = np.clip(np.nan_to_num(np.asarray(mean_spend, dtype=np.float64), nan=0.0), 0.0, None)
    p, q, v = params.p, params.q, params.v
    if q <= 1:
        return np.where(x > 0, m, np.nan)
    return p * (v + x * m) / (p * x + q - 1)
