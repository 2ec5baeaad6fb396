"""Customer baseline load (CBL) methods used by grid operators to settle demand-response (DR) credit.

A DR event is credited as ``baseline - metered load`` over the event window, where the baseline is
computed from *metered history* by a published rule, not from a simulator counterfactual (which a
policy can inflate, e.g. by pre-cooling or a pre-event setback). This module is pure numpy and
vectorized over meters: every method takes the same arguments

    method(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
        -> (baseline, info)

``history``         (days, intervals_per_day, N) metered load in kW. Row ``-1`` is the calendar day
                    immediately before the event day, row ``-2`` the day before that, and so on: rows are
                    *consecutive calendar days*, oldest first, so "the last 45 calendar days" is
                    ``history[-45:]``. Values on excluded days may be NaN.
``day_type``        (days,) int: ``WEEKDAY``, ``SATURDAY``, ``SUNDAY`` or ``HOLIDAY`` (a holiday falling on
                    any day of the week, e.g. a NERC holiday).
``excluded``        (days,) or (days, N) bool: True for days that may not be baseline days (earlier DR
                    event days, outages, data gaps), per meter where it is 2-D.
``event_day_type``  day type of the event day (same codes).
``event_day_load``  (intervals_per_day, N) kW metered on the event day. Only the intervals of the rule's
                    adjustment / reference windows are read (they must be finite); the rest may be NaN.
``event_start``     index of the first event interval; ``event_end`` one past the last (``[start, end)``).

``baseline`` is (intervals_per_day, N) kW: for the day-matching methods the adjusted baseline for every
interval of the event day (settlement reads the event window), for the same-day method the flat value
inside ``[event_start, event_end)`` and NaN outside. ``info`` (``BaselineInfo``) records which days were
in the CBL window and which were averaged (per meter), the unadjusted baseline, the adjustment and
whether its cap bound.

The interval length may be any divisor of one hour (``intervals_per_day`` a multiple of 24: 24 hourly,
48 half-hourly, 96 quarter-hourly, 288 five-minute values): the rules are written on hours, and on finer
data every rule quantity (a mean over a set of hours, a per-hour average across days) is the same mean
over the intervals of those hours. Day selection is per meter (its own low-usage test and its own
highest days), done with boolean masks over ``(days, N)``; nothing loops over meters.

Sources and what could be verified
----------------------------------
Each method's docstring names its rule document. The full rule texts (PJM Manual 11, the CAISO
Demand Response BPM / tariff, NYISO Manual 7) were *not* readable through the reference-search tool
available when this module was written (only document title pages and summaries were); the
parameters below follow those rules as published and widely documented, and every parameter that the
available sources did not let us confirm word for word is a keyword argument with the rule's value as
the default and is listed under "Not verified" in the method's docstring and in
``docs/customer_baselines.md``. Check them against the current manual revision before using the
numbers for settlement.

Conventions where the rules are silent (implementation choices, not rule text): ties in "highest k"
selection go to the more recent day; an adjustment window must lie inside the event day (no reaching
into the previous day for early-morning events: ``ValueError``); a ratio adjustment whose baseline over
the window is 0 is 1 when the metered load there is also 0 and otherwise takes the cap; baselines are
not floored at 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

# Day-type codes for ``day_type`` / ``event_day_type``.
WEEKDAY, SATURDAY, SUNDAY, HOLIDAY = 0, 1, 2, 3
DAY_TYPE_NAMES: dict[int, str] = {
    WEEKDAY: "weekday", SATURDAY: "saturday", SUNDAY: "sunday", HOLIDAY: "holiday",
}


@dataclasses.dataclass(frozen=True)
class BaselineInfo:
    """What a baseline method selected and applied, for tests and settlement audits.

    Day masks are (days, N) bool over the rows of ``history``; per-meter values are (N,).
    """

    method: str
    rule: str  # the variant applied, e.g. "weekday High 4 of 5"
    window_days: np.ndarray  # the CBL window: eligible days the selection was made from
    selected_days: np.ndarray  # the days averaged into the baseline
    low_usage_days: np.ndarray  # low-usage days passed over for the window (all False if the rule has none)
    unadjusted: np.ndarray  # (intervals_per_day, N) baseline before the day-of adjustment
    adjustment_kind: str  # "additive" (kW), "multiplicative" (factor) or "none"
    adjustment: np.ndarray  # the adjustment applied (after any cap); 0 / 1 when none
    adjustment_uncapped: np.ndarray  # the adjustment the window alone gives, before the cap
    adjustment_capped: np.ndarray  # True where the cap bound
    adjustment_intervals: tuple[tuple[int, int], ...]  # event-day windows the adjustment/reference used
    citation: str


class BaselineMethod(Protocol):
    def __call__(
        self,
        history: np.ndarray,
        day_type: np.ndarray,
        excluded: np.ndarray,
        event_day_type: int,
        event_day_load: np.ndarray,
        event_start: int,
        event_end: int,
    ) -> tuple[np.ndarray, BaselineInfo]: ...


# --------------------------------------------------------------------------------------------------
# Input checks


def intervals_per_day(interval_minutes: float) -> int:
    """Intervals per day for an interval length in minutes; ``ValueError`` unless it divides one hour.

    The baseline rules are written on whole hours, so the interval must divide 60 min (and hence 24 h),
    e.g. 1, 5, 7.5, 15, 30 or 60 minutes.
    """
    m = float(interval_minutes)
    if not np.isfinite(m) or m <= 0 or m > 60 or abs(60.0 / m - round(60.0 / m)) > 1e-9:
        raise ValueError(
            "interval_minutes must divide 60 (so it divides 24 h and every 1-hour rule window is whole "
            f"intervals), e.g. 1, 5, 15, 30 or 60; got {interval_minutes!r}"
        )
    return 24 * round(60.0 / m)


def _as_index(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer interval index; got {value!r}")  # noqa: TRY004
    return int(value)


def _as_day_type(value, name: str) -> int:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or int(value) not in DAY_TYPE_NAMES:
        raise ValueError(
            f"{name} must be one of WEEKDAY=0, SATURDAY=1, SUNDAY=2, HOLIDAY=3; got {value!r}"
        )
    return int(value)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    history: np.ndarray  # (D, P, N) float
    day_type: np.ndarray  # (D,) int
    excluded: np.ndarray  # (D, N) bool
    event_day_type: int
    event_day_load: np.ndarray  # (P, N) float
    start: int
    end: int
    per_hour: int  # intervals per hour


def validate_inputs(
    history, day_type, excluded, event_day_type, event_day_load, event_start, event_end
) -> _Inputs:
    """Check shapes, codes and ranges common to every method; ``ValueError`` names the bad parameter."""
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 3:
        raise ValueError(
            f"history must be a 3-D array (days, intervals_per_day, meters); got shape {history.shape}"
        )
    n_days, n_int, n_met = history.shape
    if n_days < 1 or n_met < 1:
        raise ValueError(f"history needs at least 1 day and 1 meter; got shape {history.shape}")
    if n_int < 24 or n_int % 24:
        raise ValueError(
            "intervals_per_day (history.shape[1]) must be a positive multiple of 24, i.e. an interval "
            "length dividing one hour (24 = hourly, 48 = 30 min, 96 = 15 min, 288 = 5 min), because the "
            f"rules' windows are whole hours; got {n_int}"
        )
    day_type = np.asarray(day_type)
    if day_type.shape != (n_days,):
        raise ValueError(f"day_type must have shape (days,) = ({n_days},); got {day_type.shape}")
    if not np.issubdtype(day_type.dtype, np.integer) or not np.isin(day_type, list(DAY_TYPE_NAMES)).all():
        raise ValueError("day_type values must be WEEKDAY=0, SATURDAY=1, SUNDAY=2 or HOLIDAY=3")
    excluded = np.asarray(excluded)
    if excluded.dtype != bool:
        raise ValueError(f"excluded must be a bool array; got dtype {excluded.dtype}")
    if excluded.shape == (n_days,):
        excluded = np.broadcast_to(excluded[:, None], (n_days, n_met))
    elif excluded.shape != (n_days, n_met):
        raise ValueError(
            f"excluded must have shape (days,) = ({n_days},) or (days, meters) = ({n_days}, {n_met}); "
            f"got {excluded.shape}"
        )
    event_day_type = _as_day_type(event_day_type, "event_day_type")
    event_day_load = np.asarray(event_day_load, dtype=np.float64)
    if event_day_load.shape != (n_int, n_met):
        raise ValueError(
            f"event_day_load must have shape (intervals_per_day, meters) = ({n_int}, {n_met}); "
            f"got {event_day_load.shape}"
        )
    start = _as_index(event_start, "event_start")
    end = _as_index(event_end, "event_end")
    if not 0 <= start < end <= n_int:
        raise ValueError(
            f"event window must satisfy 0 <= event_start < event_end <= intervals_per_day = {n_int}; "
            f"got event_start={start}, event_end={end}"
        )
    bad = ~np.isfinite(history) & ~excluded[:, None, :]
    if bad.any():
        d, i, n = (int(x[0]) for x in np.nonzero(bad))
        raise ValueError(
            f"history must be finite on days that are not excluded; {int(bad.sum())} values are not "
            f"(first at day {d}, interval {i}, meter {n}); mark such days in excluded"
        )
    return _Inputs(history, day_type.astype(np.int64), np.asarray(excluded, dtype=bool), event_day_type,
                   event_day_load, start, end, n_int // 24)


def _window(inp: _Inputs, hours_from: float, hours_to: float, method: str, anchor: str) -> tuple[int, int]:
    """Interval range ``[anchor + hours_from h, anchor + hours_to h)`` on the event day, checked."""
    base = inp.start if anchor == "start" else inp.end
    lo = base + round(hours_from * inp.per_hour)
    hi = base + round(hours_to * inp.per_hour)
    n_int = inp.history.shape[1]
    if lo < 0 or hi > n_int:
        name = "event_start" if anchor == "start" else "event_end"
        raise ValueError(
            f"{method}: its window [{name} {hours_from:+g} h, {name} {hours_to:+g} h) must lie within the "
            f"event day (intervals 0..{n_int}); got {name}={base} -> [{lo}, {hi})"
        )
    seg = inp.event_day_load[lo:hi]
    if not np.isfinite(seg).all():
        raise ValueError(f"event_day_load must be finite in intervals [{lo}, {hi}) used by {method}")
    return lo, hi


# --------------------------------------------------------------------------------------------------
# Vectorized day selection (masks are (days, N); rows oldest first)


def _most_recent(mask: np.ndarray, k: int) -> np.ndarray:
    """The k most recent True rows of each column."""
    rank = np.cumsum(mask[::-1], axis=0)[::-1]  # 1 = the most recent True row at or after this row
    return mask & (rank <= k)


def _highest(values: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Of the True rows of each column, the k with the highest value (ties: the more recent row)."""
    n_days = values.shape[0]
    key = np.where(mask, -values, np.inf)[::-1]  # newest first, so a stable sort prefers recent days
    order = np.argsort(key, axis=0, kind="stable")[:k]
    out = np.zeros_like(mask)
    np.put_along_axis(out, n_days - 1 - order, True, axis=0)
    return out & mask


def _skipped(low: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The low-usage days that were passed over, i.e. not older than the oldest day of the window."""
    first = np.argmax(window, axis=0)  # oldest window row of each meter (window is never empty here)
    return low & (np.arange(low.shape[0])[:, None] >= first[None, :])


def _day_mean(history: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Per-interval mean over the selected days of each meter: (P, N)."""
    w = days[:, None, :]
    total = np.where(w, history, 0.0).sum(axis=0)
    return total / days.sum(axis=0)


def _event_means(inp: _Inputs) -> np.ndarray:
    """Average usage of each history day over the event-window intervals: (D, N)."""
    return inp.history[:, inp.start:inp.end, :].mean(axis=1)


def _require(count: np.ndarray, need: int, what: str, method: str, param: str) -> None:
    short = np.flatnonzero(count < need)
    if short.size:
        raise ValueError(
            f"{method}: too few eligible {what} in history: needs {param}={need}, but meter(s) "
            f"{short[:5].tolist()}{'...' if short.size > 5 else ''} have only {int(count[short].min())}; "
            "provide more history or exclude fewer days"
        )


def _lookback(mask: np.ndarray, days: int | None) -> np.ndarray:
    if days is None:
        return mask
    if days < 1:
        raise ValueError(f"lookback_days must be >= 1; got {days}")
    out = mask.copy()
    out[: max(0, mask.shape[0] - days)] = False
    return out


def _ratio_adjustment(actual: np.ndarray, base: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Uncapped and capped multiplicative factor ``actual / base`` (both (N,))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(base != 0, actual / np.where(base != 0, base, 1.0),
                       np.where(actual == 0, 1.0, np.sign(actual) * np.inf))
    return raw, np.clip(raw, 1.0 - cap, 1.0 + cap)


# --------------------------------------------------------------------------------------------------
# Methods

PJM_CITATION = (
    "PJM Manual 11: Energy & Ancillary Services Market Operations, Section 10 (Demand Resource "
    "participation), 'Customer Baseline Load (CBL)' for Economic Load Response: weekday High 4 of 5 with "
    "Symmetric Additive Adjustment; Saturday and Sunday/holiday High 2 of 3. Revisions seen: Rev. 92 "
    "(effective 2017-11-01), Rev. 105 (effective 2019-04-25). https://www.pjm.com/-/media/documents/"
    "manuals/m11.ashx (copy of Rev. 105: https://vdocument.in/pjm-manual-11.html). Section number and "
    "exact wording not verified (see module docstring)."
)


def _day_of_ratio(inp: _Inputs, cbl: np.ndarray, adjust: bool, cap: float, window_end_h: float, method: str):
    """(windows, kind, factor, uncapped factor) of a capped day-of ratio adjustment over the event day's
    ``[start - 4 h, start + window_end_h)`` (CAISO ends 1 h before the event, NYISO 2 h); factor 1 without it."""
    if not adjust:
        ones = np.ones(cbl.shape[1])
        return (), "none", ones, ones
    lo, hi = _window(inp, -4, window_end_h, method, "start")
    raw, factor = _ratio_adjustment(inp.event_day_load[lo:hi].mean(axis=0), cbl[lo:hi].mean(axis=0), cap)
    return ((lo, hi),), "multiplicative", factor, raw


def _pjm_like_days(inp: _Inputs) -> tuple[np.ndarray, str]:
    """PJM's like days of the event day (weekdays; Saturdays; Sundays and holidays) as a (days,) mask, and their
    name for error messages."""
    if inp.event_day_type == WEEKDAY:
        return inp.day_type == WEEKDAY, "weekdays"
    if inp.event_day_type == SATURDAY:
        return inp.day_type == SATURDAY, "Saturdays"
    return (inp.day_type == SUNDAY) | (inp.day_type == HOLIDAY), "Sundays/holidays"


def pjm_high_4_of_5(
    history,
    day_type,
    excluded,
    event_day_type,
    event_day_load,
    event_start,
    event_end,
    *,
    lookback_days: int = 45,
    low_usage_fraction: float = 0.25,
    adjust: bool = True,
) -> tuple[np.ndarray, BaselineInfo]:
    """PJM Economic Load Response CBL: High 4 of 5 (weekday), High 2 of 3 (Saturday; Sunday/holiday).

    Source: PJM Manual 11, Energy & Ancillary Services Market Operations, Section 10, Customer Baseline
    Load (Rev. 92 of 2017-11-01 and Rev. 105 of 2019-04-25 consulted by title; current manual at
    https://www.pjm.com/-/media/documents/manuals/m11.ashx).

    Rule as implemented:

    1. Like days: a weekday event uses weekdays (Mon-Fri that are not holidays); a Saturday event uses
       Saturdays; a Sunday or holiday event uses Sundays and holidays.
    2. CBL window: the most recent like days within the ``lookback_days`` = 45 calendar days before the
       event day, skipping excluded days (earlier event days, outages): 5 for weekdays, 3 otherwise.
    3. Low-usage days: a day whose average usage over the event hours is below ``low_usage_fraction`` =
       25 % of the mean of that average over the initial window is dropped and replaced by the next
       most recent like day (replacements are tested against the same threshold).
    4. Of the window, the 4 (weekday) / 2 (weekend, holiday) days with the highest average usage over
       the event hours are averaged hour by hour.
    5. Symmetric Additive Adjustment (``adjust``): add (mean metered load - mean CBL) over the 3 hours
       ending 1 hour before the event start, i.e. ``[start - 4 h, start - 1 h)`` (event starting at
       13:00 -> hours 09:00-12:00); the same kW is added to every interval; it may be negative; no cap.

    Not verified against the manual text (see module docstring): the low-usage reference (the mean over
    the initial window) and that the screen applies to the weekend variants too; PJM's fallback when
    fewer than 5 (3) like days exist in 45 days is not implemented (``ValueError`` instead).
    """
    method = "pjm_high_4_of_5"
    inp = validate_inputs(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
    like, what = _pjm_like_days(inp)
    if inp.event_day_type == WEEKDAY:
        n_window, n_keep, rule = 5, 4, "weekday High 4 of 5"
    elif inp.event_day_type == SATURDAY:
        n_window, n_keep, rule = 3, 2, "Saturday High 2 of 3"
    else:
        n_window, n_keep, rule = 3, 2, "Sunday/holiday High 2 of 3"
    eligible = _lookback(like[:, None] & ~inp.excluded, lookback_days)
    ev = _event_means(inp)
    initial = _most_recent(eligible, n_window)
    _require(initial.sum(axis=0), n_window, f"{what} within {lookback_days} days", method, "window size")
    ref = np.where(initial, ev, 0.0).sum(axis=0) / n_window
    low = eligible & (ev < low_usage_fraction * ref)
    window = _most_recent(eligible & ~low, n_window)
    _require(window.sum(axis=0), n_window,
             f"{what} (after dropping low-usage days) within {lookback_days} days", method, "window size")
    low = _skipped(low, window)
    selected = _highest(ev, window, n_keep)
    cbl = _day_mean(inp.history, selected)
    n_met = cbl.shape[1]
    windows: tuple[tuple[int, int], ...] = ()
    if adjust:
        lo, hi = _window(inp, -4, -1, method, "start")
        windows = ((lo, hi),)
        saa = inp.event_day_load[lo:hi].mean(axis=0) - cbl[lo:hi].mean(axis=0)
        kind = "additive"
    else:
        saa, kind = np.zeros(n_met), "none"
    info = BaselineInfo(method, rule, window, selected, low, cbl, kind, saa, saa, np.zeros(n_met, bool),
                        windows, PJM_CITATION)
    return cbl + saa, info


PJM_SAME_DAY_CITATION = (
    "PJM 'Same Day (3 + 2)' CBL, added to PJM Manual 11 in the 2025 revision briefed to the Markets "
    "Implementation Committee. Source available: RTO Insider, 'Improved DR Baseline Processes OKd', "
    "2025-02-25, https://rtowww.com/23098-improved-dr-baseline-processes-okd (a report of the manual "
    "change, not the manual text)."
)


def pjm_same_day_3_2(
    history,
    day_type,
    excluded,
    event_day_type,
    event_day_load,
    event_start,
    event_end,
) -> tuple[np.ndarray, BaselineInfo]:
    """PJM Same Day (3 + 2) CBL: the event day's own load around the event, flat over the event.

    Source: the only text found is a trade-press report of the PJM Manual 11 change (RTO Insider,
    "Improved DR Baseline Processes OKd", 25 Feb 2025, https://rtowww.com/23098-improved-dr-baseline-
    processes-okd): "The Same Day (3 + 2) method bases the CBL on the average of three hours before
    event (after skipping one hour) and two hours after event (after skipping one hour). For an event
    occurring in hours ending 13-17, for example, PJM would average hours ending 9-11 and 19-20."

    As implemented: baseline = mean of the event day's metered load over ``[start - 4 h, start - 1 h)``
    and ``[end + 1 h, end + 3 h)`` (5 hours, equally weighted), for every interval of the event window;
    NaN outside it. History is validated but not used. The manual's own wording (e.g. handling of events
    near midnight, weekend applicability, weighting) was not available; windows outside the event day
    raise ``ValueError``.
    """
    method = "pjm_same_day_3_2"
    inp = validate_inputs(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
    before = _window(inp, -4, -1, method, "start")
    after = _window(inp, +1, +3, method, "end")
    ref = np.concatenate([inp.event_day_load[slice(*before)], inp.event_day_load[slice(*after)]])
    level = ref.mean(axis=0)
    n_int, n_met = inp.event_day_load.shape
    baseline = np.full((n_int, n_met), np.nan)
    baseline[inp.start:inp.end] = level
    none = np.zeros(inp.excluded.shape, bool)
    info = BaselineInfo(method, "Same Day (3 + 2)", none, none, none, baseline.copy(), "none",
                        np.zeros(n_met), np.zeros(n_met), np.zeros(n_met, bool), (before, after),
                        PJM_SAME_DAY_CITATION)
    return baseline, info


PJM_MATCH_DAY_CITATION = (
    "PJM 'Match Day (3-day average)' CBL, added to PJM Manual 11 in the 2025 revision briefed to the Markets "
    "Implementation Committee. Source available: RTO Insider, 'Improved DR Baseline Processes OKd', "
    "2025-02-25, https://rtowww.com/23098-improved-dr-baseline-processes-okd (a report of the manual "
    "change, not the manual text)."
)


def pjm_match_day(
    history,
    day_type,
    excluded,
    event_day_type,
    event_day_load,
    event_start,
    event_end,
    *,
    n_days: int = 3,
    lookback_days: int = 45,
) -> tuple[np.ndarray, BaselineInfo]:
    """PJM Match Day (3-day average) CBL: the mean of the like days whose load best matches the event day's
    own load outside the event.

    Source: the only text found is a trade-press report of the PJM Manual 11 change (RTO Insider,
    "Improved DR Baseline Processes OKd", 25 Feb 2025, https://rtowww.com/23098-improved-dr-baseline-
    processes-okd): "The Match Day (3-day average) method uses an average of the three non-event days with
    the most similar load to the non-event hours on the event day. The hour before and after the event are
    excluded from the 'non-event' hours."

    As implemented: the matching hours are the event day's intervals outside ``[start - 1 h, end + 1 h)``
    (clipped to the day; they must be finite); the candidates are the eligible (not excluded) like days
    within ``lookback_days`` (like days as in :func:`pjm_high_4_of_5`); the ``n_days`` = 3 candidates with the
    smallest sum of squared differences to the event day over the matching hours are averaged interval by
    interval; no day-of adjustment. Not verified (the manual text was not available): the like-day grouping,
    the 45-day candidate window (borrowed from High 4 of 5) and the similarity measure (squared error).
    Ties go to the more recent day. The baseline is final only at the end of the event day.
    """
    method = "pjm_match_day"
    inp = validate_inputs(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
    if isinstance(n_days, bool) or not isinstance(n_days, (int, np.integer)) or n_days < 1:
        raise ValueError(f"{method}: n_days must be an integer >= 1; got {n_days!r}")
    n_int = inp.history.shape[1]
    lo, hi = max(0, inp.start - inp.per_hour), min(n_int, inp.end + inp.per_hour)
    matching = np.ones(n_int, bool)
    matching[lo:hi] = False
    if not matching.any():
        raise ValueError(f"{method}: the event and the hour either side cover the whole day; nothing to match on")
    if not np.isfinite(inp.event_day_load[matching]).all():
        raise ValueError(f"event_day_load must be finite outside intervals [{lo}, {hi}) (the hours {method} "
                         "matches on)")
    like, what = _pjm_like_days(inp)
    eligible = _lookback(like[:, None] & ~inp.excluded, lookback_days)
    _require(eligible.sum(axis=0), n_days, f"{what} within {lookback_days} days", method, "n_days")
    diff = np.where(eligible[:, None, :], inp.history, 0.0)[:, matching, :] - inp.event_day_load[matching][None]
    distance = (diff ** 2).sum(axis=1)  # (D, N)
    selected = _highest(-distance, eligible, n_days)
    cbl = _day_mean(inp.history, selected)
    n_met = cbl.shape[1]
    none = np.zeros(inp.excluded.shape, bool)
    info = BaselineInfo(method, f"Match Day ({n_days}-day average)", eligible, selected, none, cbl, "none",
                        np.zeros(n_met), np.zeros(n_met), np.zeros(n_met, bool), ((0, lo), (hi, n_int)),
                        PJM_MATCH_DAY_CITATION)
    return cbl, info


CAISO_CITATION = (
    "CAISO Business Practice Manual for Demand Response, performance evaluation methodologies: Customer "
    "Load Baseline 'Day Matching 10-in-10' (weekday) / '4-in-4' (weekend and holiday) with a day-of "
    "(load point) adjustment capped at +/-20 %; CAISO Tariff Section 4.13.4. "
    "https://bpmcm.caiso.com/Pages/BPMDetails.aspx?BPM=Demand%20Response ; see also CAISO Demand Response "
    "User Guide v4.3 (2017-05-05) and the ESDER Phase 2 tariff amendment filed 2018-08-17. "
    "Section numbers and exact wording not verified (see module docstring)."
)


def caiso_10_in_10(
    history,
    day_type,
    excluded,
    event_day_type,
    event_day_load,
    event_start,
    event_end,
    *,
    lookback_days: int = 45,
    min_days: int | None = None,
    cap: float = 0.20,
    adjust: bool = True,
) -> tuple[np.ndarray, BaselineInfo]:
    """CAISO Customer Load Baseline, 10-in-10 (weekday) / 4-in-4 (weekend and holiday).

    Source: CAISO Business Practice Manual for Demand Response (performance evaluation methodologies,
    Customer Load Baseline) and CAISO Tariff Section 4.13.4;
    https://bpmcm.caiso.com/Pages/BPMDetails.aspx?BPM=Demand%20Response.

    Rule as implemented:

    1. Like days: weekday events use non-holiday weekdays; weekend or holiday events use Saturdays,
       Sundays and holidays together.
    2. The 10 (weekday) / 4 (weekend, holiday) most recent like non-event days within the
       ``lookback_days`` = 45 days before the event day are all averaged hour by hour (no highest-X
       selection, no low-usage screen).
    3. Day-of adjustment (``adjust``): factor = mean metered load / mean baseline over the three hours
       before the hour preceding the event, ``[start - 4 h, start - 1 h)``, clipped to
       ``[1 - cap, 1 + cap]`` with ``cap`` = 20 % (symmetric, up or down); the baseline is multiplied
       by it.

    Not verified against the rule text: the fallback when fewer than 10 (4) like days exist; by default
    that raises ``ValueError``; ``min_days`` lets a caller accept fewer (the average then uses the days
    found, at least ``min_days``).
    """
    method = "caiso_10_in_10"
    inp = validate_inputs(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
    if not 0 <= cap < 1:
        raise ValueError(f"cap must be in [0, 1); got {cap}")
    if inp.event_day_type == WEEKDAY:
        like = inp.day_type == WEEKDAY
        n_days, rule, what = 10, "weekday 10-in-10", "weekdays"
    else:
        like = inp.day_type != WEEKDAY
        n_days, rule, what = 4, "weekend/holiday 4-in-4", "weekend/holiday days"
    need = n_days if min_days is None else int(min_days)
    if not 1 <= need <= n_days:
        raise ValueError(f"min_days must be in [1, {n_days}] for a {rule} baseline; got {min_days}")
    eligible = _lookback(like[:, None] & ~inp.excluded, lookback_days)
    window = _most_recent(eligible, n_days)
    _require(window.sum(axis=0), need, f"{what} within {lookback_days} days", method, "min_days")
    cbl = _day_mean(inp.history, window)
    windows, kind, factor, raw = _day_of_ratio(inp, cbl, adjust, cap, -1, method)
    none = np.zeros(window.shape, bool)
    info = BaselineInfo(method, rule, window, window.copy(), none, cbl, kind, factor, raw, raw != factor,
                        windows, CAISO_CITATION)
    return cbl * factor, info


NYISO_CITATION = (
    "NYISO Manual 7: Emergency Demand Response Program Manual (EDRP and SCR energy settlement), section "
    "'Customer Baseline Load (CBL)': Average Day CBL (weekday: highest 5 of 10; weekend: highest 2 of 3 "
    "like days) with the weather-sensitive adjustment capped at +/-20 %. Version 7.2, effective "
    "2016-06-03, https://www.nyiso.com/manuals-tech-bulletins-user-guides (copy: "
    "https://studylib.net/doc/18697533/edrp-manual). Section number and exact wording not verified (see "
    "module docstring)."
)


def nyiso_cbl(
    history,
    day_type,
    excluded,
    event_day_type,
    event_day_load,
    event_start,
    event_end,
    *,
    lookback_days: int = 30,
    low_usage_fraction: float = 0.25,
    cap: float = 0.20,
    adjust: bool = True,
) -> tuple[np.ndarray, BaselineInfo]:
    """NYISO Average Day CBL with the weather-sensitive adjustment.

    Source: NYISO Manual 7, Emergency Demand Response Program Manual, Customer Baseline Load section
    (Version 7.2, effective 2016-06-03; https://www.nyiso.com/manuals-tech-bulletins-user-guides).

    Rule as implemented:

    1. The CBL window starts two days before the event day (the day immediately before is never used).
    2. Weekday events: the 10 most recent non-holiday, non-excluded weekdays within ``lookback_days`` =
       30 days. Low-usage screen: the "seed" is the highest average event-hour usage among those 10;
       a day whose average event-hour usage is below ``low_usage_fraction`` = 25 % of the seed is
       dropped and replaced by the next earlier eligible weekday (tested against the same seed).
       The CBL basis is the 5 window days with the highest average event-hour usage, averaged hour by
       hour.
    3. Weekend / holiday events: the 3 most recent like days (Saturdays for a Saturday event; Sundays
       and holidays otherwise), the 2 highest averaged.
    4. Weather-sensitive adjustment (``adjust``): factor = mean metered load / mean CBL over the two
       hours beginning four hours before the event, ``[start - 4 h, start - 2 h)`` (event at 14:00 ->
       10:00-12:00), clipped to ``[1 - cap, 1 + cap]`` with ``cap`` = 20 %; the CBL is multiplied by it.

    Not verified against the manual text: the 30-day limit, the seed definition, the grouping of
    holidays with Sundays, and that the weekend variant has no low-usage screen.
    """
    method = "nyiso_cbl"
    inp = validate_inputs(history, day_type, excluded, event_day_type, event_day_load, event_start, event_end)
    if not 0 <= cap < 1:
        raise ValueError(f"cap must be in [0, 1); got {cap}")
    if inp.event_day_type == WEEKDAY:
        like = inp.day_type == WEEKDAY
        n_window, n_keep, rule, what, screen = 10, 5, "weekday highest 5 of 10", "weekdays", True
    elif inp.event_day_type == SATURDAY:
        like = inp.day_type == SATURDAY
        n_window, n_keep, rule, what, screen = 3, 2, "Saturday highest 2 of 3", "Saturdays", False
    else:
        like = (inp.day_type == SUNDAY) | (inp.day_type == HOLIDAY)
        n_window, n_keep, rule, what = 3, 2, "Sunday/holiday highest 2 of 3", "Sundays/holidays"
        screen = False
    eligible = like[:, None] & ~inp.excluded
    eligible[-1] = False  # the window begins two days before the event day
    eligible = _lookback(eligible, lookback_days)
    ev = _event_means(inp)
    low = np.zeros_like(eligible)
    if screen:
        initial = _most_recent(eligible, n_window)
        _require(initial.sum(axis=0), n_window, f"{what} within {lookback_days} days", method, "window size")
        seed = np.where(initial, ev, -np.inf).max(axis=0)
        low = eligible & (ev < low_usage_fraction * seed)
    window = _most_recent(eligible & ~low, n_window)
    _require(window.sum(axis=0), n_window, f"{what} within {lookback_days} days (excluding the day before"
             f"{' and low-usage days' if screen else ''})", method, "window size")
    low = _skipped(low, window)
    selected = _highest(ev, window, n_keep)
    cbl = _day_mean(inp.history, selected)
    windows, kind, factor, raw = _day_of_ratio(inp, cbl, adjust, cap, -2, method)
    info = BaselineInfo(method, rule, window, selected, low, cbl, kind, factor, raw, raw != factor, windows,
                        NYISO_CITATION)
    return cbl * factor, info


# --------------------------------------------------------------------------------------------------
# Registry

BASELINE_METHODS: Mapping[str, BaselineMethod] = {
    "pjm_high_4_of_5": pjm_high_4_of_5,
    "pjm_same_day_3_2": pjm_same_day_3_2,
    "pjm_match_day": pjm_match_day,
    "caiso_10_in_10": caiso_10_in_10,
    "nyiso_cbl": nyiso_cbl,
}


def get_baseline_method(name: str) -> Callable[..., tuple[np.ndarray, BaselineInfo]]:
    """The method registered under ``name``; ``ValueError`` lists the registered names otherwise."""
    try:
        return BASELINE_METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"baseline method must be one of {sorted(BASELINE_METHODS)}; got {name!r}") from None


def compute_baseline(name: str, history, day_type, excluded, event_day_type, event_day_load, event_start,
                     event_end, **options) -> tuple[np.ndarray, BaselineInfo]:
    """Run the registered method ``name`` (keyword ``options`` are that method's rule parameters)."""
    return get_baseline_method(name)(history, day_type, excluded, event_day_type, event_day_load,
                                     event_start, event_end, **options)


__all__ = [
    "BASELINE_METHODS",
    "DAY_TYPE_NAMES",
    "HOLIDAY",
    "SATURDAY",
    "SUNDAY",
    "WEEKDAY",
    "BaselineInfo",
    "BaselineMethod",
    "caiso_10_in_10",
    "compute_baseline",
    "get_baseline_method",
    "intervals_per_day",
    "nyiso_cbl",
    "pjm_high_4_of_5",
    "pjm_match_day",
    "pjm_same_day_3_2",
    "validate_inputs",
]
