"""BG/NBD (beta-geometric / negative binomial distribution) by maximum likelihood.

The model (Fader, Hardie and Lee 2005, "Counting your customers the easy way"): while alive
a customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after every purchase
they die with probability p ~ Beta(a, b). A customer is summarised by
- x: repeat purchases (purchase periods after the first one),
- t_x: time from the first to the last purchase (recency in the BTYD sense),
- T: time from the first purchase to the cutoff (age).

The log-likelihood is in closed form (their equation 6); we maximise it over the logarithms
of (r, alpha, a, b) with scipy's L-BFGS-B, on the distinct (x, t_x, T) rows weighted by how
many customers share them. Times are rescaled so the largest T is 10 during the fit (as the
`lifetimes` library does), which keeps alpha of order one; the result is in the caller's unit.
`tests/models/test_btyd.py` checks the parameters and predictions against `lifetimes` on the
same simulated purchases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1

SCALED_MAX_AGE = 10.0


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters (alpha in the time unit of the data) and the fit's figures."""

    r: float
    alpha: float
    a: float
    b: float
    customers: int
    log_likelihood: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _log_likelihood(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray,
                    weight: np.ndarray) -> float:
    r, alpha, a, b = np.exp(log_params)
    common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
              + betaln(a, b + x) - betaln(a, b))
    alive = -(r + x) * np.log(alpha + age)
    repeat = x > 0
    died = np.full(len(x), -np.inf)
    died[repeat] = (np.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return float(np.sum(weight * (common + np.logaddexp(alive, died))))


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, age: np.ndarray) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters of these customers (finite rows only).

    Raises ValueError when fewer than two customers have a repeat purchase (nothing to learn).
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, age))
    known = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (T > 0)
    x, t_x, T = x[known], t_x[known], T[known]
    if int((x > 0).sum()) < 2:
        raise ValueError(f"BG/NBD needs customers with repeat purchases; {int((x > 0).sum())} of {len(x)} have any")
    scale = SCALED_MAX_AGE / float(T.max())
    rows, weight = np.unique(np.column_stack([x, t_x * scale, T * scale]), axis=0, return_counts=True)
    args = (rows[:, 0], rows[:, 1], rows[:, 2], weight.astype(np.float64))
    total = float(weight.sum())

    def objective(log_params: np.ndarray) -> float:
        return -_log_likelihood(log_params, *args) / total

    start = np.zeros(4)
    result = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4,
                      options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9})
    r, alpha, a, b = np.exp(result.x)
    return BgNbdParams(float(r), float(alpha / scale), float(a), float(b), int(len(x)),
                       float(-result.fun * total))


def _log_death_odds(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """log of P(dead after the last purchase) / P(alive), given the history (-inf without repeats)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.full(len(x), -np.inf)
    repeat = x > 0
    xr = x[repeat]
    out[repeat] = (np.log(a) - np.log(b + xr - 1)
                   + (r + xr) * (np.log(alpha + age[repeat]) - np.log(alpha + t_x[repeat])))
    return out


def probability_alive(params: BgNbdParams, frequency: np.ndarray, recency: np.ndarray,
                      age: np.ndarray) -> np.ndarray:
    """P(still alive at the cutoff | history) (their equation 11); 1 without a repeat purchase."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, age))
    return expit(-_log_death_odds(params, x, t_x, T))


def probability_active(params: BgNbdParams, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray,
                       horizon: float) -> np.ndarray:
    """P(at least one purchase in the `horizon` after the cutoff | history).

    Alive at the cutoff, the rate given the history is Gamma(r + x, alpha + T) and a customer
    can only die just after a purchase, so the chance of a first purchase in the horizon is
    1 - ((alpha + T) / (alpha + T + horizon))^(r + x); dead customers never buy.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, age))
    none = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + horizon)))
    return probability_alive(params, x, t_x, T) * (1.0 - none)


def expected_purchases(params: BgNbdParams, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray,
                       horizon: float) -> np.ndarray:
    """Expected purchases in the `horizon` after the cutoff | history (their equation 10).

    The factor ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) is computed through
    Euler's transformation as (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), z = t/(alpha+T+t),
    which stays finite for customers with thousands of purchases.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, age))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + T + horizon)
    c = a + b + x - 1
    term = (1.0 - z) ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, c, z)
    value = c / (a - 1) * (1.0 - term) * probability_alive(params, x, t_x, T)
    return np.clip(value, 0.0, None)
