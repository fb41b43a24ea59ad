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
from scipy.special import digamma, gammaln
from threadpoolctl import threadpool_limits

from models.btyd.bgnbd import dot


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
    # Per customer: ll = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v).
    # The terms in x alone are taken once per distinct x (whole purchase counts: a few hundred
    # values), those in m alone summed once; only ln(xm+v) runs over every customer.
    xs, counts = np.unique(x, return_counts=True)
    counts = counts.astype(np.float64)
    xm = x * m_scaled
    sum_x_log_m, sum_log_m = dot(x, np.log(m_scaled)), float(np.log(m_scaled).sum())
    n = float(len(x))

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(log_params)
        px = p * xs
        log_xm_v = np.log(xm + v)
        per_x = gammaln(px + q) - gammaln(px) + px * np.log(xs)
        x_log_xm_v = dot(x, log_xm_v)
        ll = (dot(counts, per_x) - n * gammaln(q) + n * q * np.log(v) + p * sum_x_log_m - sum_log_m
              - p * x_log_xm_v - q * float(log_xm_v.sum()))
        inverse = 1.0 / (xm + v)
        gradient = np.array([
            dot(counts, xs * (digamma(px + q) - digamma(px) + np.log(xs))) + sum_x_log_m - x_log_xm_v,
            dot(counts, digamma(px + q)) - n * digamma(q) + n * np.log(v) - float(log_xm_v.sum()),
            n * q / v - p * dot(x, inverse) - q * float(inverse.sum()),
        ]) * np.array([p, q, v])
        return -ll / n, -gradient / n

    with threadpool_limits(1):  # tiny BLAS steps: threads only cost (models/btyd/bgnbd.py)
        result = minimize(objective, np.array([0.0, np.log(2.0), 0.0]), jac=True, method="L-BFGS-B",
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
