"""Uplift: the effect of a retention contact on churn within the label horizon, per customer.

Learned from past contacts with a randomised control group (`contacts.treatment = 0`):
meta-learners on LightGBM (`learners.py`), chosen by Qini on validation rows inside the training
rows and judged by held-out Qini and uplift@k with
bootstrap intervals (`metrics.py`), the training rows defined in `data.py`, training and
learner choice in `training.py`, and the campaign effect report in `effects.py`.
Pure: frames in, frames out; no file or tracking I/O (that lives in `pipelines/`).

Sign convention everywhere: uplift = P(churn | not contacted) - P(churn | contacted), the
churn probability a contact takes away. Positive: the contact keeps customers; negative:
the contact drives them away (a "sleeping dog").
"""
