"""PJM regulation performance score (accuracy, delay, precision) as pure, vectorized numpy.

A resource providing frequency regulation in PJM is paid according to a performance score that
compares the regulation signal it was sent with its measured response, both expressed as the
deviation from the operating point declared for the hour and sampled every 10 s.

Sources
-------
* PJM Manual 12: Balancing Operations, Section 4 "Providing Ancillary Services", the
  "Regulation Performance Score" subsection (numbered 4.5.6 in recent revisions; third-party
  quotations cite 4.4.6 for earlier ones). Revision 35, effective 2016-08-25 (copy:
  https://studylib.net/doc/18226607/manual-12--balancing-operations); current revision:
  https://www.pjm.com/-/media/DotCom/documents/manuals/m12.pdf .
  This session could not retrieve the manual text itself. The formulas below come from the
  project brief, from quotations of the manual in public code (for example the Univ. of Michigan
  compressor-load co-simulation testbed, ``pjmScoringPassFailv5.m``: "Correlation and Delay are
  determined together by finding the 10 second interval with the highest coincident Correlation
  and Delay score ... max over delta = 0 to 5 min of (Delay Score + Correlation Score)"), and from
  memory. Check them against the current revision before using them for settlement.
* PJM Manual 11: Energy & Ancillary Services Market Operations (regulation market section; the
  "historic performance score" is a rolling average of a resource's recent hourly scores),
  https://www.pjm.com/-/media/DotCom/documents/manuals/m11.pdf . The 100-hour window
  (``HISTORIC_WINDOW_HOURS``) is from memory and was not verified here.
* No separate PJM "Regulation Performance Score" explanatory document was found in this session.

Definitions (one scoring hour, ``n`` samples ``s_t`` (signal) and ``r_t`` (response), period ``T``)
----------------------------------------------------------------------------------------------
* Candidate delays ``delta = k*T`` for ``k = 0 .. K``, ``K = 300 s / T`` (31 candidates at 10 s).
* Correlation at a delay: Pearson ``rho(k) = corr(s[0 : n-k], r[k : n])``. The signal is compared
  with the response ``k`` samples later. **Alignment:** the last ``k`` signal samples and the first
  ``k`` response samples of the hour drop out, so the overlap holds ``n - k`` pairs. No samples from
  a neighbouring hour are used.
* Delay score ``D(k) = |(delta - 5 min) / 5 min| = 1 - k/K``.
* Choice of ``delta*`` (``delay_rule``):
    - ``"joint"`` (default, the manual as quoted above): ``k* = argmax_k (rho(k) + D(k))``;
    - ``"max_correlation"`` (the project brief's reading): ``k* = argmax_k rho(k)``.
  Ties go to the smallest delay.
* Accuracy (correlation score) ``A = clip(rho(k*), 0, 1)``; delay score ``D = D(k*)``.
* Precision ``P = clip(1 - mean_t |r_t - s_t| / mean_t |s_t|, 0, 1)``, on the unshifted hour. This is
  the manual's ``1 - (1/n) * sum |(Response - Signal) / HourlyAverageSignal|``, taking the hourly
  average of the signal's magnitude (a signed mean of a zero-mean regulation signal is close to 0).
* Composite ``S = (A + D + P) / 3``.

Edge cases (choices made here, not in the manual)
-------------------------------------------------
* A window is *constant* when its standard deviation is at most ``1e-9`` times its largest
  magnitude (exactly zero std for an all-zero window).
* Signal and response windows both constant: ``rho = 1``. This is the manual's low-variance rule
  ``1 - |slope(signal) - slope(response)|`` with both slopes 0. The rule itself is not applied to
  signals that vary only a little, because the manual gives no threshold and the slopes depend on
  the units.
* Exactly one window constant: ``rho`` is undefined and that delay can't be chosen. If no delay
  has a defined ``rho`` (e.g. a zero or flat response to a moving signal), then ``A = 0``,
  ``D = 0`` and ``delay_s = 300``: no response was found within 5 minutes.
* ``mean |s| == 0`` (signal identically zero): ``P = 1`` if the response is also identically zero,
  else ``P = 0``.
* All three scores are clipped to [0, 1]. The manual reports scores on [0, 1]; this clip turns a
  negative correlation or an error larger than the mean signal into 0.
* The 10 s signal-propagation latency that third parties say the manual allows is NOT applied.
  To apply it, pass ``response[..., 1:]`` against ``signal[..., :-1]``.

Hourly series and aggregate
---------------------------
``hourly_scores`` splits a long series into consecutive whole hours (each scored on its own) and
returns scores with an hours axis. ``aggregate_score`` averages hourly scores, ignoring NaN hours
(hours the resource did not regulate). ``rolling_score`` gives the trailing rolling average that
PJM uses for the historic performance score; it defaults to ``HISTORIC_WINDOW_HOURS`` (100).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "HISTORIC_WINDOW_HOURS",
    "MAX_DELAY_S",
    "RegulationScore",
    "aggregate_score",
    "hourly_scores",
    "performance_score",
    "rolling_score",
]

MAX_DELAY_S = 300.0
"""Largest candidate delay (5 minutes), which is also the delay score's normaliser."""
HISTORIC_WINDOW_HOURS = 100
"""Hours in PJM's rolling historic performance score (Manual 11, not verified in this session)."""
HOUR_S = 3600.0
_CONST_RTOL = 1e-9
_DELAY_RULES = ("joint", "max_correlation")


class RegulationScore(NamedTuple):
    """Scores with the input's leading shape (numpy scalars for a single series)."""

    accuracy: np.ndarray
    """Correlation score at the chosen delay, in [0, 1]."""
    delay: np.ndarray
    """Delay score ``|(delta* - 5 min) / 5 min|``, in [0, 1]."""
    precision: np.ndarray
    """``1 - mean|response - signal| / mean|signal|``, clipped to [0, 1]."""
    composite: np.ndarray
    """``(accuracy + delay + precision) / 3``."""
    delay_s: np.ndarray
    """Chosen delay ``delta*`` in seconds (300 when no delay had a defined correlation)."""


def _check_sample_s(sample_s: float) -> int:
    """Number of candidate delay steps after zero (30 for 10 s); ValueError if 5 min isn't a multiple."""
    try:
        sample_s = float(sample_s)
    except (TypeError, ValueError):
        raise ValueError(f"sample_s must be a number of seconds in (0, {MAX_DELAY_S:g}] dividing "
                         f"{MAX_DELAY_S:g} s, got {sample_s!r}") from None
    if not (math.isfinite(sample_s) and 0.0 < sample_s <= MAX_DELAY_S):
        raise ValueError(f"sample_s must be in (0, {MAX_DELAY_S:g}] seconds and divide {MAX_DELAY_S:g} s, "
                         f"got {sample_s!r}")
    steps = MAX_DELAY_S / sample_s
    k = round(steps)
    if abs(steps - k) > 1e-9 * max(1.0, steps):
        raise ValueError(f"sample_s must divide {MAX_DELAY_S:g} s (5 minutes) exactly, e.g. 1, 2, 5, 10, 30 "
                         f"or 60 s; got {sample_s!r} ({steps:.6g} steps)")
    return int(k)


def _as_series(name: str, x) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real-valued array of shape (..., samples), got {type(x).__name__}") \
            from None
    if a.ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension (..., samples), got a scalar")
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} must be finite (no NaN or inf); found {bad} non-finite value(s)")
    return a


def _check_pair(signal, response) -> tuple[np.ndarray, np.ndarray]:
    s = _as_series("signal", signal)
    r = _as_series("response", response)
    if s.shape != r.shape:
        raise ValueError(f"response must have the same shape as signal {s.shape}, got {r.shape}")
    return s, r


def _is_constant(centered: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Per-row: std <= rtol * max|x| (an all-zero row counts as constant)."""
    std = np.sqrt(np.mean(centered * centered, axis=-1))
    return std <= _CONST_RTOL * np.max(np.abs(raw), axis=-1)


def _lag_correlations(s: np.ndarray, r: np.ndarray, max_k: int) -> tuple[np.ndarray, np.ndarray]:
    """``rho`` of shape (..., max_k+1) and a mask of where it is defined."""
    n = s.shape[-1]
    lead = s.shape[:-1]
    rho = np.zeros(lead + (max_k + 1,))
    defined = np.zeros(lead + (max_k + 1,), dtype=bool)
    for k in range(max_k + 1):  # loop over candidate delays only; samples stay vectorized
        a = s[..., : n - k]
        b = r[..., k:]
        ac = a - a.mean(axis=-1, keepdims=True)
        bc = b - b.mean(axis=-1, keepdims=True)
        ca, cb = _is_constant(ac, a), _is_constant(bc, b)
        saa = np.sum(ac * ac, axis=-1)
        sbb = np.sum(bc * bc, axis=-1)
        sab = np.sum(ac * bc, axis=-1)
        both_vary = ~ca & ~cb
        denom = np.sqrt(np.where(both_vary, saa * sbb, 1.0))
        pearson = np.clip(np.where(both_vary, sab / denom, 0.0), -1.0, 1.0)
        rho[..., k] = np.where(ca & cb, 1.0, pearson)
        defined[..., k] = both_vary | (ca & cb)
    return rho, defined


def performance_score(signal, response, sample_s: float = 10.0, *,
                      delay_rule: str = "joint") -> RegulationScore:
    """PJM performance score of one scoring hour (or any window) per series.

    Args:
        signal: regulation signal in MW or kW, already scaled by the assigned capacity, i.e. the
            requested deviation from the declared operating point; shape ``(..., samples)``.
        response: measured deviation from the declared operating point, same units and shape.
        sample_s: sample period in seconds; must divide 300 s (10 s in PJM's scoring).
        delay_rule: ``"joint"`` (max of correlation + delay score, as the manual is quoted) or
            ``"max_correlation"`` (delay of the highest correlation). See the module docstring.

    Returns:
        ``RegulationScore`` whose fields have the leading shape ``(...)``.

    Raises:
        ValueError: shapes differ, non-finite values, ``sample_s`` not dividing 5 minutes, fewer than
            ``300 / sample_s + 2`` samples (each of the 31 shifted overlaps needs 2 pairs), or an
            unknown ``delay_rule``.
    """
    if delay_rule not in _DELAY_RULES:
        raise ValueError(f"delay_rule must be one of {_DELAY_RULES}, got {delay_rule!r}")
    max_k = _check_sample_s(sample_s)
    s, r = _check_pair(signal, response)
    n = s.shape[-1]
    if n < max_k + 2:
        raise ValueError(f"signal and response need at least {max_k + 2} samples along the last axis "
                         f"(max delay {MAX_DELAY_S:g} s = {max_k} steps of {float(sample_s):g} s, plus 2), "
                         f"got {n}")

    rho, defined = _lag_correlations(s, r, max_k)
    k_idx = np.arange(max_k + 1)
    delay_by_k = 1.0 - k_idx / max_k  # |(k*T - 300) / 300|
    objective = rho + delay_by_k if delay_rule == "joint" else rho
    objective = np.where(defined, objective, -np.inf)
    k_star = np.argmax(objective, axis=-1)  # first maximum: ties go to the smallest delay
    any_defined = np.any(defined, axis=-1)
    rho_star = np.take_along_axis(rho, k_star[..., None], axis=-1)[..., 0]

    accuracy = np.where(any_defined, np.clip(rho_star, 0.0, 1.0), 0.0)
    delay = np.where(any_defined, delay_by_k[k_star], 0.0)
    delay_s = np.where(any_defined, k_star * float(sample_s), MAX_DELAY_S)

    mean_abs_s = np.mean(np.abs(s), axis=-1)
    mean_abs_err = np.mean(np.abs(r - s), axis=-1)
    safe = np.where(mean_abs_s > 0.0, mean_abs_s, 1.0)
    precision = np.where(mean_abs_s > 0.0, np.clip(1.0 - mean_abs_err / safe, 0.0, 1.0),
                         np.where(mean_abs_err == 0.0, 1.0, 0.0))

    composite = (accuracy + delay + precision) / 3.0
    return RegulationScore(*(np.asarray(x, dtype=np.float64)[()]
                             for x in (accuracy, delay, precision, composite, delay_s)))


def hourly_scores(signal, response, sample_s: float = 10.0, *, hour_s: float = HOUR_S,
                  drop_incomplete: bool = False, delay_rule: str = "joint") -> RegulationScore:
    """Split ``(..., samples)`` series into consecutive hours and score each hour on its own.

    Sample 0 starts the first hour. Returns a ``RegulationScore`` whose fields have shape
    ``(..., hours)``. A trailing partial hour raises ValueError unless ``drop_incomplete=True``,
    which discards it.
    """
    max_k = _check_sample_s(sample_s)
    try:
        hour_s = float(hour_s)
    except (TypeError, ValueError):
        raise ValueError(f"hour_s must be a positive number of seconds, got {hour_s!r}") from None
    per = hour_s / float(sample_s)
    per_i = round(per) if math.isfinite(per) else 0
    if not (math.isfinite(hour_s) and hour_s > 0 and per_i >= 1 and abs(per - per_i) <= 1e-9 * per):
        raise ValueError(f"hour_s must be a positive multiple of sample_s={float(sample_s):g} s, "
                         f"got {hour_s!r}")
    if per_i < max_k + 2:
        raise ValueError(f"hour_s must hold at least {max_k + 2} samples of {float(sample_s):g} s, "
                         f"got {per_i}")
    s, r = _check_pair(signal, response)
    n = s.shape[-1]
    hours, rest = divmod(n, per_i)
    if rest and not drop_incomplete:
        raise ValueError(f"signal length {n} must be a multiple of {per_i} samples per hour "
                         f"(or pass drop_incomplete=True to drop the last {rest} samples)")
    if hours == 0:
        raise ValueError(f"signal must hold at least one whole hour ({per_i} samples), got {n}")
    shape = s.shape[:-1] + (hours, per_i)
    m = hours * per_i
    return performance_score(s[..., :m].reshape(shape), r[..., :m].reshape(shape), sample_s,
                             delay_rule=delay_rule)


def _check_hourly(hourly) -> np.ndarray:
    try:
        h = np.asarray(hourly, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("hourly must be a real-valued array of shape (..., hours)") from None
    if h.ndim < 1 or h.shape[-1] == 0:
        raise ValueError(f"hourly must have shape (..., hours) with at least one hour, got shape {h.shape}")
    if np.any(np.isinf(h)):
        raise ValueError("hourly must not contain inf (use NaN for hours without regulation service)")
    return h


def _check_window(window_hours) -> int:
    if isinstance(window_hours, bool) or not isinstance(window_hours, (int, np.integer)) or window_hours < 1:
        raise ValueError(f"window_hours must be an integer >= 1, got {window_hours!r}")
    return int(window_hours)


def aggregate_score(hourly, window_hours: int | None = None) -> np.ndarray:
    """Mean of hourly scores along the last axis, skipping NaN (hours without regulation service).

    With ``window_hours``, only the most recent ``window_hours`` hours (the end of the axis) are
    averaged. Rows with no valid hour give NaN.
    """
    h = _check_hourly(hourly)
    if window_hours is not None:
        h = h[..., -_check_window(window_hours):]
    valid = ~np.isnan(h)
    count = valid.sum(axis=-1)
    total = np.where(valid, h, 0.0).sum(axis=-1)
    out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.asarray(out, dtype=np.float64)[()]


def rolling_score(hourly, window_hours: int = HISTORIC_WINDOW_HOURS) -> np.ndarray:
    """Trailing rolling mean of hourly scores (same shape), skipping NaN hours.

    Element ``i`` averages the valid hours among ``i - window_hours + 1 .. i``. It is shorter at the
    start, and NaN where that span has no valid hour. This is PJM's historic performance score
    with the default 100-hour window.
    """
    h = _check_hourly(hourly)
    w = _check_window(window_hours)
    valid = ~np.isnan(h)
    zero = np.zeros(h.shape[:-1] + (1,))
    csum = np.concatenate([zero, np.cumsum(np.where(valid, h, 0.0), axis=-1)], axis=-1)
    ccnt = np.concatenate([zero, np.cumsum(valid, axis=-1)], axis=-1)
    hi = np.arange(1, h.shape[-1] + 1)
    lo = np.maximum(hi - w, 0)
    total = csum[..., hi] - csum[..., lo]
    count = ccnt[..., hi] - ccnt[..., lo]
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
