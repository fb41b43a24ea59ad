"""Buy-till-you-die models for non-contractual purchase data (no one says when they leave).

- `bgnbd`: the BG/NBD model of Fader, Hardie and Lee (2005) -- how often a customer buys and
  the chance they are still "alive" -- fitted by maximum likelihood with scipy;
- `gamma_gamma`: the Gamma-Gamma spend model of Fader, Hardie and Lee (2005b) -- what an
  average purchase of this customer is worth.

Both take per-customer summaries (frequency, recency, age; mean spend) computed strictly
before a cutoff, so a fit at a cutoff sees no later data. `features/btyd.py` turns them into
feature columns; `models/training.py` reports them as baselines.
"""

from models.btyd.bgnbd import BgNbdParams, expected_purchases, fit_bgnbd, probability_active, probability_alive
from models.btyd.gamma_gamma import GammaGammaParams, expected_spend, fit_gamma_gamma

__all__ = ["BgNbdParams", "GammaGammaParams", "expected_purchases", "expected_spend", "fit_bgnbd",
           "fit_gamma_gamma", "probability_active", "probability_alive"]
