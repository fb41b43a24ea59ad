"""Branches, business lines, complaint text and complaint timing for the synthetic bank (`churn generate`).

Drawn after the simulation from their OWN random stream (seeded from the seed and the
name of this stream), so every column the simulation writes stays byte-identical for a
given seed whether or not these columns exist.

- `branch`: the branch that handled a complaint or the survey's touchpoint, one of four
  branches in the customer's region. A few branches are truly worse
  (`WORSE_BRANCHES`): answers given there are lower. Scores are already drawn by the
  simulation, so the branch is drawn given the score (Bayes' rule: at a worse branch a
  low score is more likely), which gives those branches a lower mean by about
  `WORSE_TILT` standard deviations and leaves the others at the average. The planted
  branches and their realised means are in `_truth/branches.parquet`.
- `business_line`: business banking for small-business customers; otherwise the line of
  the complaint's product (surveys: the customer's main line).
- `text`: a complaint in the customer's words, from templated phrases per category with
  variation (some texts vague, some worded like a related category, as real ones are),
  typos, urgency that follows the tier and a tone that follows the customer's hidden
  dissatisfaction when complaining (so the text's sentiment carries signal the
  scores miss). No real people, names or account numbers appear.
- complaint timing (`place_complaints`, called by the simulation once a complaint's channel
  is drawn, from the stream `TIMING_STREAM`): weekday and hour by channel, and the slower
  handling of complaints opened at the weekend.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pandas as pd

STREAM = "branches-business-lines-text"
BRANCHES_PER_REGION = 4
WORSE_BRANCHES: tuple[str, ...] = ("north_02", "east_03", "central_01")
WORSE_TILT = 0.5  # exponential tilt on the standardised score: mean lower by about this many SDs
BUSINESS_LINES: tuple[str, ...] = ("everyday_banking", "cards", "loans", "wealth", "business_banking")
PRODUCT_LINE = {"payments": "everyday_banking", "current_account": "everyday_banking", "cards": "cards",
                "loans": "loans", "wealth": "wealth"}
TYPO_SHARE = 0.12  # share of texts with one or two typing slips

OPENINGS_CALM = ("Hello,", "Hi,", "Good morning,", "Dear team,", "", "", "Hello team,")
OPENINGS_ANGRY = ("This is the third time I write.", "I am really fed up.", "Seriously?", "Again!",
                  "I have had enough.")
CORE: dict[str, tuple[str, ...]] = {
    "transfer_failure": (
        "my transfer never arrived but the money left my account",
        "a payment I sent to my landlord did not go through and the amount is gone",
        "the transfer is stuck as pending for days",
        "money was debited twice and the recipient got nothing",
        "the transfer failed and nobody can tell me where the money is"),
    "system_lag": (
        "the app keeps freezing when I log in",
        "the mobile app is extremely slow since the last update",
        "online banking times out every time I open my statements",
        "the app crashed in the middle of a payment",
        "pages take forever to load and then show an error"),
    "transfer_verification": (
        "I had to confirm the same transfer with three different codes",
        "too many verification steps just to send a small amount",
        "the security check asks for a code that never arrives by sms",
        "every transfer needs a new confirmation, it takes ages"),
    "duplicate_documents": (
        "I was asked for the same documents twice for my loan application",
        "you asked again for my payslips which I already uploaded",
        "the loan officer lost my papers and wants them again",
        "I keep sending the same proof of address for the mortgage"),
    "branch_queue": (
        "I waited in the branch queue for over forty minutes",
        "only one counter was open at the branch on saturday",
        "the queue at the branch was out the door",
        "I waited an hour at the branch just to deposit a cheque"),
    "wealth_yield_display": (
        "the yield shown on my savings product is wrong",
        "the return displayed for my fund does not match the statement",
        "the interest rate on the app is different from what I was promised",
        "my investment balance shows a wrong figure"),
    "card_problem": (
        "my card was declined at the supermarket",
        "the card got blocked while I was abroad",
        "my new card never arrived",
        "the contactless payment keeps failing with my card",
        "the atm swallowed my card"),
    "fees": (
        "I was charged a fee I never agreed to",
        "there is a monthly charge on my account I do not understand",
        "you charged me an overdraft fee although I had money",
        "the transfer fee was much higher than announced"),
    "staff_attitude": (
        "the staff at the counter were rude to me",
        "the adviser was unhelpful and did not listen",
        "the person on the phone hung up on me",
        "an employee was dismissive about my problem"),
    "slow_response": (
        "nobody answered my request from two weeks ago",
        "I am still waiting for a reply to my previous message",
        "my earlier complaint has not been answered",
        "I was promised a call back that never came"),
    "accessibility": (
        "the font in the app is too small to read",
        "I cannot find the menu to change my address",
        "the website does not work with my screen reader",
        "the buttons are too small and the contrast is poor"),
}
GENERIC = ("I have a problem with my account and need someone to call me",
           "something is wrong again and I want an explanation",
           "I already reported this issue and it is still not solved",
           "your service let me down this week",
           "I could not do what I needed to do with the bank today")
# Categories customers describe in each other's words (a declined card payment reads like a failed transfer).
RELATED: dict[str, str] = {
    "transfer_failure": "transfer_verification", "transfer_verification": "transfer_failure",
    "system_lag": "accessibility", "accessibility": "system_lag", "card_problem": "fees", "fees": "card_problem",
    "slow_response": "staff_attitude", "staff_attitude": "branch_queue", "branch_queue": "staff_attitude",
    "duplicate_documents": "slow_response", "wealth_yield_display": "fees",
}
VAGUE_SHARE = 0.12  # texts that do not say what went wrong
BORROWED_SHARE = 0.10  # texts worded like a related category
URGENT = ("Please fix this immediately.", "This is urgent, I need the money today.", "I need help right now!",
          "Please call me back today, it is urgent.")
SOFT = ("Could you look into it when you can?", "Just a suggestion for the next update.",
        "It would be nice if this could be improved.", "Maybe something to consider.")
NEUTRAL = ("Please check.", "Can you help?", "Please advise.", "Let me know what to do.", "")
NEGATIVE = ("This is unacceptable.", "Terrible service, I am very disappointed.",
            "I am seriously thinking of closing my account.", "Worst bank experience ever.",
            "I am angry and frustrated.", "I will move my money elsewhere if this is not solved.")
MIXED = ("Usually I am happy with the bank, but this was annoying.", "Thanks for your help in advance.",
         "The staff were friendly, but the problem is still there.", "Otherwise the service is good.",
         "I appreciate the quick reply last time.")


# --- When complaints are opened: weekday and hour by channel, and what a weekend does to handling.
# The simulation draws each complaint's day uniformly within its month; `place_complaints` moves
# it to a day within three days either side (never outside the customer's days in the month)
# and an hour, both drawn from the channel's weekly profile, from the stream `TIMING_STREAM`, so
# no draw of the simulation's own stream is added or moved. Complaints of a planted chain keep
# their date (their order and gaps stay as planted) and only get an hour.
TIMING_STREAM = "complaint-timing"
WEEKEND_SLOWDOWN = 1.4  # handling times of complaints opened on Saturday or Sunday (thin weekend team)
BRANCH_SATURDAY_SLOWDOWN = 1.8  # branch complaints on Saturday: one counter open, long queues


def _hours(*segments: tuple[int, int, float]) -> np.ndarray:
    """A 24-hour profile from (first hour, end hour, weight) segments, summing to 1."""
    profile = np.zeros(24)
    for first, end, weight in segments:
        profile[first:end] = weight
    return profile / profile.sum()


_OFFICE = _hours((8, 9, 0.6), (9, 12, 1.2), (12, 14, 1.0), (14, 18, 1.0), (18, 20, 0.5))
_ALWAYS = _hours((0, 6, 0.08), (6, 8, 0.4), (8, 12, 1.0), (12, 14, 1.2), (14, 18, 0.9), (18, 23, 1.4), (23, 24, 0.5))
# Per complaint channel (order of pipelines.generate.COMPLAINT_CHANNELS): the relative volume of each
# weekday (Monday first) and the hour profile of weekdays, Saturday and Sunday.
CHANNEL_TIMING: dict[str, tuple[tuple[float, ...], np.ndarray, np.ndarray, np.ndarray]] = {
    # branches: open 9-17 on weekdays and 9-13 on Saturday (busiest: one counter), closed on Sunday
    "branch": ((1.0, 0.9, 0.9, 0.95, 1.15, 1.6, 0.0), _hours((9, 12, 1.0), (12, 14, 1.5), (14, 17, 1.0)),
               _hours((9, 13, 1.0)), _hours((9, 13, 1.0))),
    # phone: 8-20 on weekdays (Monday brings the weekend's problems), shorter hours at the weekend
    "phone": ((1.35, 1.05, 1.0, 1.0, 0.95, 0.55, 0.3), _OFFICE, _hours((9, 17, 1.0)), _hours((10, 16, 1.0))),
    # app and online banking: any hour, evenings busiest
    "mobile_app": ((1.0, 1.0, 1.0, 1.0, 1.05, 1.1, 1.1), _ALWAYS, _ALWAYS, _ALWAYS),
    "online_banking": ((1.1, 1.05, 1.0, 1.0, 1.0, 0.8, 0.8), _ALWAYS, _ALWAYS, _ALWAYS),
    "social": ((0.9, 0.9, 0.9, 0.95, 1.0, 1.2, 1.3), _hours((0, 7, 0.1), (7, 18, 0.7), (18, 24, 1.5)),
               _hours((0, 9, 0.15), (9, 24, 1.0)), _hours((0, 9, 0.15), (9, 24, 1.0))),
    "email": ((1.2, 1.1, 1.05, 1.0, 1.0, 0.6, 0.6), _hours((0, 7, 0.1), (7, 18, 1.0), (18, 24, 0.5)),
              _hours((0, 8, 0.1), (8, 24, 0.6)), _hours((0, 8, 0.1), (8, 24, 0.6))),
}


def timing_grid(channels: tuple[str, ...]) -> np.ndarray:
    """Intensity of complaint opening per (channel, weekday Monday=0, hour): each weekday sums to its weight."""
    grid = np.zeros((len(channels), 7, 24))
    for c, name in enumerate(channels):
        weights, weekday, saturday, sunday = CHANNEL_TIMING[name]
        for day in range(7):
            grid[c, day] = weights[day] * (weekday if day < 5 else saturday if day == 5 else sunday)
    return grid


def place_complaints(rng: np.random.Generator, day: np.ndarray, channel: np.ndarray, keep_date: np.ndarray,
                     lo: np.ndarray, hi: np.ndarray, first_weekday: int, channels: tuple[str, ...]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """New opening times (days since the start) and the handling slowdown of each complaint.

    A complaint moves to one of the seven dates `floor(day) - 3 .. floor(day) + 3` that lie in
    `[lo, hi)` (whole days: the customer's days in the month), chosen by the channel's weekday
    weights, then to an hour of the channel's profile for that weekday and a uniform minute.
    `keep_date` complaints only get the hour. `first_weekday`: weekday of day 0 (Monday = 0);
    `channel` indexes `channels`. Slowdown: `WEEKEND_SLOWDOWN` at the weekend,
    `BRANCH_SATURDAY_SLOWDOWN` for branch complaints on Saturday, 1 otherwise.
    """
    n = len(day)
    grid = timing_grid(channels)
    u = rng.random((n, 3))
    date = np.floor(day)
    offsets = np.arange(-3, 4)
    candidates = date[:, None] + offsets[None, :]
    weekday = (first_weekday + candidates.astype(np.int64)) % 7
    day_weight = grid.sum(axis=2)[channel[:, None], weekday]
    valid = (candidates >= lo[:, None]) & (candidates < hi[:, None])
    valid &= ~keep_date[:, None] | (offsets[None, :] == 0)
    day_weight = np.where(valid, day_weight, 0.0)
    total = day_weight.sum(axis=1)
    pick = (u[:, :1] * total[:, None] > np.cumsum(day_weight, axis=1)).sum(axis=1)
    chosen = np.where(total > 0, candidates[np.arange(n), np.minimum(pick, 6)], date)
    chosen_weekday = (first_weekday + chosen.astype(np.int64)) % 7
    hour_weight = grid[channel, chosen_weekday]
    closed = hour_weight.sum(axis=1) == 0  # a kept date on a day the channel is closed: Saturday's hours
    hour_weight[closed] = grid[channel[closed], 5]
    cumulative = np.cumsum(hour_weight, axis=1)
    hour = (u[:, 1:2] * cumulative[:, -1:] > cumulative).sum(axis=1)
    placed = chosen + (np.minimum(hour, 23) + u[:, 2]) / 24.0
    slow = np.where(chosen_weekday >= 5, WEEKEND_SLOWDOWN, 1.0)
    if "branch" in channels:
        saturday_branch = (chosen_weekday == 5) & (channel == channels.index("branch"))
        slow = np.where(saturday_branch, BRANCH_SATURDAY_SLOWDOWN, slow)
    return placed, slow


def stream(seed: int, name: str | None = None) -> np.random.Generator:
    """A random generator for one named stream (default `STREAM`), independent of the simulation's."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32((name or STREAM).encode("utf-8"))])


def branch_names(regions: tuple[str, ...]) -> np.ndarray:
    """Branch names per region, region-major: north_01 .. north_04, south_01, ..."""
    return np.array([f"{r}_{i:02d}" for r in regions for i in range(1, BRANCHES_PER_REGION + 1)], dtype=object)


def _standardised(score: np.ndarray) -> np.ndarray:
    """Scores as z-values (0 where absent, so unscored records are not tilted)."""
    valid = ~np.isnan(score)
    z = np.zeros(len(score))
    if valid.sum() > 1 and np.nanstd(score) > 0:
        z[valid] = (score[valid] - score[valid].mean()) / score[valid].std()
    return z


def draw_branches(rng: np.random.Generator, region: np.ndarray, score_z: np.ndarray,
                  names: np.ndarray) -> np.ndarray:
    """One branch per record (its index into `names`), in the record's region; a worse branch is likelier for a low score."""
    per = BRANCHES_PER_REGION
    base = np.array([0.34, 0.28, 0.22, 0.16])  # branch sizes within a region
    worse = np.isin(names, WORSE_BRANCHES).reshape(-1, per)  # (regions, branches)
    weights = base[None, :] * np.exp(-WORSE_TILT * worse[region] * score_z[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(weights, axis=1)
    local = (rng.random((len(region), 1)) > cumulative).sum(axis=1)
    return (region * per + np.minimum(local, per - 1)).astype(np.int16)


_LETTER_PAIR = re.compile(r"[A-Za-z](?=[A-Za-z])")  # an ASCII letter followed by one: where a typo can fall


def _typo(rng: np.random.Generator, text: str) -> str:
    """One or two typing slips: a swapped pair of letters, a dropped or a doubled letter."""
    chars = list(text)
    if text.isascii():  # the same positions, found faster
        letters = [m.start() for m in _LETTER_PAIR.finditer(text)]
    else:
        letters = [i for i, ch in enumerate(chars[:-1]) if ch.isalpha() and chars[i + 1].isalpha()]
    for _ in range(1 + int(rng.random() < 0.3)):
        if not letters:
            break
        i = letters[int(rng.integers(len(letters)))]
        kind = int(rng.integers(3))
        if kind == 0:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == 1:
            chars[i] = ""
        else:
            chars[i] = chars[i] * 2
    return "".join(chars)


def complaint_texts(rng: np.random.Generator, category: np.ndarray, tier: np.ndarray, mood: np.ndarray,
                    category_names: tuple[str, ...], angry_draw: np.ndarray, u: np.ndarray) -> list[str]:
    """Complaint texts: opening, what happened, urgency by tier, tone by the hidden mood, typos.

    `angry_draw` (one uniform per text) and `u` (seven per text) are drawn by the caller (`CareColumns`
    places them in the stream); the typos draw from `rng`, text by text.
    """
    n = len(category)
    angry = angry_draw < 1.0 - np.exp(-0.9 * np.maximum(mood, 0.0))  # unhappier customers write angrier
    texts: list[str] = []
    # Python lists: the same doubles and integers, read faster one by one
    cats, tiers, rows, angry_rows = category.tolist(), tier.tolist(), u.tolist(), angry.tolist()
    for k in range(n):
        row = rows[k]
        cat = category_names[cats[k]]
        cores = (GENERIC if row[6] < VAGUE_SHARE else
                 CORE[RELATED[cat]] if row[6] < VAGUE_SHARE + BORROWED_SHARE else CORE[cat])
        core = cores[int(row[0] * len(cores))]
        if angry_rows[k]:
            opening = OPENINGS_ANGRY[int(row[1] * len(OPENINGS_ANGRY))]
            tone = NEGATIVE[int(row[2] * len(NEGATIVE))]
        else:
            opening = OPENINGS_CALM[int(row[1] * len(OPENINGS_CALM))]
            tone = (MIXED[int(row[2] * len(MIXED))] if row[3] < 0.35 else "")
        t = tiers[k]
        ask_pool = URGENT if t == 0 else (SOFT if t == 3 else NEUTRAL)
        ask = ask_pool[int(row[4] * len(ask_pool))] if (t in (0, 3) or row[4] < 0.7) else ""
        sentence = (core if opening.endswith(",") else core[0].upper() + core[1:]) + "."
        text = " ".join(part for part in (opening, sentence, tone, ask) if part)
        if row[5] < TYPO_SHARE:
            text = _typo(rng, text)
        texts.append(text)
    return texts


def _skipped(rng: np.random.Generator, draws: int) -> np.random.Generator:
    """A copy of `rng` (PCG64) moved on by `draws` uniform floats (each takes one 64-bit output); `rng` is unchanged."""
    bits = np.random.PCG64()
    bits.state = rng.bit_generator.state
    bits.advance(draws)
    return np.random.Generator(bits)


class CareColumns:
    """Branch, business line and text of complaints and surveys, drawn piece by piece from the stream `STREAM`.

    The values are those of drawing every row at once (complaints: branches, then a uniform per
    text, then seven per text, then the typos in row order; surveys after them: branches, line,
    wealth line): each piece draws from a copy of the stream moved to where the whole-table draw
    would be, so a 10-million-customer bank never holds all texts. Ask for pieces in row order,
    every complaint piece before the first survey piece. `complaint` and `survey` are the
    simulation's living events in the tables' row order (customer index, category, tier, mood),
    so no simulation draw is repeated; the scores are the tables' own (NaN where not given).
    """

    def __init__(self, seed: int, region: np.ndarray, segment: np.ndarray, has_loan: np.ndarray,
                 regions: tuple[str, ...], category_names: tuple[str, ...], category_products: tuple[str, ...],
                 complaint: dict[str, np.ndarray], satisfaction: np.ndarray, survey: dict[str, np.ndarray],
                 csat: np.ndarray, nps: np.ndarray) -> None:
        self.region, self.segment, self.has_loan = region, segment, has_loan
        self.regions, self.category_names = regions, category_names
        self.names = branch_names(regions)
        self.category_line = np.array([PRODUCT_LINE[p] for p in category_products], dtype=object)
        self.complaint, self.survey = complaint, survey
        self.satisfaction, self.csat, self.nps = satisfaction, csat, nps
        n = len(complaint["customer"])
        rng = stream(seed)
        self._branch, self._angry, self._u, self._typo = (_skipped(rng, k * n) for k in (0, 1, 2, 9))
        self._complaint_z = _standardised(satisfaction)
        self.complaint_branch = np.zeros(n, dtype=np.int16)
        self.survey_branch = np.zeros(len(survey["customer"]), dtype=np.int16)
        self._complaints_done = 0
        self._survey_streams: tuple[np.random.Generator, ...] | None = None

    def complaints(self, part: slice) -> dict[str, pd.Series]:
        """`text`, `branch` and `business_line` of the complaints in `part` (the next rows in order)."""
        if part.start != self._complaints_done:
            raise RuntimeError(f"complaint pieces out of order: asked for row {part.start}, "
                               f"next is {self._complaints_done}")
        customer = self.complaint["customer"][part]
        m = len(customer)
        codes = draw_branches(self._branch, self.region[customer], self._complaint_z[part], self.names)
        self.complaint_branch[part] = codes
        category = self.complaint["category"][part]
        line = np.where(self.segment[customer] == 2, "business_banking", self.category_line[category])
        texts = complaint_texts(self._typo, category, self.complaint["tier"][part], self.complaint["mood"][part],
                                self.category_names, self._angry.random(m), self._u.random((m, 7)))
        self._complaints_done = part.stop
        return {"text": pd.Series(texts, dtype="str"), "branch": pd.Series(self.names[codes], dtype="str"),
                "business_line": pd.Series(line, dtype="str")}

    def surveys(self, part: slice) -> dict[str, pd.Series]:
        """`branch` and `business_line` of the surveys in `part` (the next rows in order, after every complaint)."""
        n = len(self.survey["customer"])
        if self._survey_streams is None:
            if self._complaints_done != len(self.complaint["customer"]):
                raise RuntimeError("survey pieces asked for before every complaint piece")
            csat, nps = _standardised(self.csat), _standardised(self.nps)
            both = ~np.isnan(self.csat) & ~np.isnan(self.nps)
            self._survey_z = np.where(both, (csat + nps) / 2.0, csat + nps)
            self._survey_streams = tuple(_skipped(self._typo, k * n) for k in (0, 1, 2))
            self._surveys_done = 0
        if part.start != self._surveys_done:
            raise RuntimeError(f"survey pieces out of order: asked for row {part.start}, next is {self._surveys_done}")
        branch_rng, line_rng, wealth_rng = self._survey_streams
        customer = self.survey["customer"][part]
        m = len(customer)
        codes = draw_branches(branch_rng, self.region[customer], self._survey_z[part], self.names)
        self.survey_branch[part] = codes
        retail = np.array(["everyday_banking", "cards", "loans"], dtype=object)
        pick = (line_rng.random((m, 1)) > np.cumsum([0.6, 0.25, 0.15])[None, :]).sum(axis=1)
        line = np.where(self.has_loan[customer] & (pick == 2), "loans", retail[np.minimum(pick, 1)])
        line = np.where(self.segment[customer] == 1, np.where(wealth_rng.random(m) < 0.6, "wealth", line), line)
        line = np.where(self.segment[customer] == 2, "business_banking", line)
        self._surveys_done = part.stop
        return {"branch": pd.Series(self.names[codes], dtype="str"), "business_line": pd.Series(line, dtype="str")}

    def branch_truth(self) -> pd.DataFrame:
        """`_truth/branches`: every branch, whether it is planted worse, and its realised mean scores."""
        names, regions = self.names, self.regions
        truth = pd.DataFrame({"branch": pd.Series(names, dtype="str"),
                              "region": pd.Series(np.repeat(np.array(regions, dtype=object), BRANCHES_PER_REGION),
                                                  dtype="str"),
                              "truly_worse": np.isin(names, WORSE_BRANCHES),
                              "planted_tilt_sd": np.where(np.isin(names, WORSE_BRANCHES), WORSE_TILT, 0.0)})
        for label, codes, score in (("complaint_satisfaction", self.complaint_branch, self.satisfaction),
                                    ("csat", self.survey_branch, self.csat), ("nps", self.survey_branch, self.nps)):
            means = pd.Series(score).groupby(codes).mean()
            truth[f"mean_{label}"] = pd.Series(np.arange(len(names))).map(means).astype(float).round(4)
        return truth
