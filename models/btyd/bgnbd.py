"""BG/NBD (beta-geometric / negative binomial distribution) by maximum likelihood.

The model (Fader, Hardie and Lee 2005, "Counting your customers the easy way"): while alive
a customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after every purchase
they die with probability p ~ Beta(a, b). A customer is summarised by
- x: repeat purchases (purchase periods after the first one),
- t_x: time from the first to the last purchase (recency in the BTYD sense),
- T: time from the first purchase to the cutoff (age).

The log-likelihood is in closed form (their equation 6); we maximise it over the logarithms
of (r, alpha, a, b) with scipy's L-BFGS-B and its analytic gradient, on the distinct (x, t_x, T)
rows weighted by how many customers share them, every special function taken once per distinct
x, t_x or T (whole days: a million customers fit in about a second). Times are rescaled so the largest T is 10 during the fit (as the
`lifetimes` library does), which keeps alpha of order one; the result is in the caller's unit.
`tests/models/test_btyd.py` checks the parameters and predictions against `lifetimes` on the
same simulated purchases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

SCALED_MAX_AGE = 10.0
MAX_ROW_KEY = 2**62
"""Distinct (x, t_x, T) rows are found through one int64 key per row while the key space fits."""


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


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a * b by numpy's own summation, not BLAS: the same sum whatever BLAS and threads."""
    return float(np.sum(a * b))


@dataclass(frozen=True)
class _Summary:
    """The fit's data in small tables: each distinct x, t_x and T once, and the distinct
    (x, t_x, T) rows as indices into them with how many customers share each row.

    Frequencies, recencies and ages are whole days in practice (a few hundred distinct values
    each, however many customers), so every gammaln, digamma and log of the likelihood is taken
    on a table entry and only gathers and sums run over the rows.
    """

    x: np.ndarray
    t_x: np.ndarray
    age: np.ndarray
    ix: np.ndarray
    it: np.ndarray
    ia: np.ndarray
    weight: np.ndarray
    x_weight: np.ndarray  # customers per distinct x

    @classmethod
    def of(cls, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, time_scale: float = 1.0) -> "_Summary":
        """The tables of these customers, their times multiplied by `time_scale` (the fit's unit)."""
        xs, ix = _distinct(x)
        ts, it = _distinct(t_x, time_scale)
        ages, ia = _distinct(age, time_scale)
        if len(xs) * len(ts) * len(ages) < MAX_ROW_KEY:  # one int64 key per row: a fast 1-d unique
            rows, weight = np.unique((ix.astype(np.int64) * len(ts) + it) * len(ages) + ia, return_counts=True)
            ix_rows, it_rows, ia_rows = rows // (len(ages) * len(ts)), rows // len(ages) % len(ts), rows % len(ages)
        else:  # millions of distinct continuous times
            triples, weight = np.unique(np.column_stack([ix, it, ia]), axis=0, return_counts=True)
            ix_rows, it_rows, ia_rows = triples.T
        weight = weight.astype(np.float64)
        return cls(xs, ts, ages, ix_rows, it_rows, ia_rows, weight,
                   np.bincount(ix_rows, weights=weight, minlength=len(xs)))


WHOLE_LIMIT = 1 << 24
"""`_distinct` counts whole numbers below this (a bincount of at most 16M entries) instead of sorting."""


def _distinct(values: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values times `scale`, and each value's position among them (as
    `np.unique(values * scale, return_inverse=True)`). Whole numbers of a small range, the usual case
    (purchase counts, whole days), are found by counting instead of sorting: about 0.2 s less per fit
    of a million customers, where the fit runs at every cutoff."""
    if len(values) and values.min() >= 0 and values.max() < WHOLE_LIMIT:
        whole = values.astype(np.int64)
        if np.array_equal(whole, values):
            present = np.bincount(whole) > 0
            position = np.cumsum(present) - 1
            return np.flatnonzero(present) * scale, position[whole]
    return np.unique(values * scale, return_inverse=True)


def _log_likelihood_and_gradient(log_params: np.ndarray, data: _Summary) -> tuple[float, np.ndarray]:
    """Log-likelihood of the customers (their equation 6) and its gradient in the log-parameters.

    Per customer: ll = common(x) + logaddexp(A, D) with
      common = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, b+x) - lnB(a, b),
      A = -(r+x) ln(alpha+T),  D = ln(a) - ln(b+x-1) - (r+x) ln(alpha+t_x)  (only when x > 0);
    with w = the share of D in the sum (0 without repeats), the derivatives are
      d/dr     = psi(r+x) - psi(r) + ln(alpha) - (1-w) ln(alpha+T) - w ln(alpha+t_x),
      d/dalpha = r/alpha - (r+x) ((1-w)/(alpha+T) + w/(alpha+t_x)),
      d/da     = psi(a+b) - psi(a+b+x) + w/a,
      d/db     = psi(b+x) - psi(a+b+x) - psi(b) + psi(a+b) - w/(b+x-1).
    """
    r, alpha, a, b = np.exp(log_params)
    xs, counts = data.x, data.x_weight
    common = (gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + betaln(a, b + xs) - betaln(a, b))
    grad_common = np.array([
        dot(counts, digamma(r + xs) - digamma(r) + np.log(alpha)),
        counts.sum() * r / alpha,
        dot(counts, digamma(a + b) - digamma(a + b + xs)),
        dot(counts, digamma(b + xs) - digamma(a + b + xs) - digamma(b) + digamma(a + b)),
    ])
    repeat = xs > 0
    inverse_b = np.zeros(len(xs))  # 1 / (b + x - 1) where x > 0
    inverse_b[repeat] = 1.0 / (b + xs[repeat] - 1)
    log_a_b = np.full(len(xs), -np.inf)
    log_a_b[repeat] = np.log(a) + np.log(inverse_b[repeat])
    log_age, log_recency = np.log(alpha + data.age), np.log(alpha + data.t_x)
    rx = (r + xs)[data.ix]
    lt_age, lt_rec = log_age[data.ia], log_recency[data.it]
    odds = log_a_b[data.ix] + rx * (lt_age - lt_rec)  # D - A: -inf without repeats
    w = expit(odds)  # share of "died after the last purchase"; 0 without repeats
    weight = data.weight
    ww = weight * w
    inverse_age, inverse_recency = (1.0 / (alpha + data.age))[data.ia], (1.0 / (alpha + data.t_x))[data.it]
    # logaddexp(A, D) = A + log(1 + e^(D-A))
    weight_rx = weight * rx
    log_likelihood = dot(counts, common) - dot(weight_rx, lt_age) + dot(weight, np.logaddexp(0.0, odds))
    gradient = grad_common + np.array([
        -dot(weight, lt_age) + dot(ww, lt_age - lt_rec),
        -dot(weight_rx, inverse_age + w * (inverse_recency - inverse_age)),
        float(ww.sum()) / a,
        -dot(ww, inverse_b[data.ix]),
    ])
    return log_likelihood, gradient * np.array([r, alpha, a, b])


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
    data = _Summary.of(x, t_x, T, scale)
    total = float(len(x))

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = _log_likelihood_and_gradient(log_params, data)
        return -value / total, -gradient / total

    # one BLAS thread: L-BFGS-B steps on 4-element vectors through BLAS, and OpenBLAS's threads on a
    # busy 2-core machine made each step cost milliseconds (the whole fit ~20x slower)
    with threadpool_limits(1):
        result = minimize(objective, np.zeros(4), jac=True, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4,
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
