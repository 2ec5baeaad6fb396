"""Held-out days: training and evaluation episodes never share a day.

Every fifth week of the data (days 28-34, 63-69, ... counted from the data's first row) is held out: ten
weeks spread over the seasons, each a contiguous block so that a day and its neighbour (whose loads are
correlated) fall on the same side. ``train`` episodes cover only other days, and never start on the day
right after a held-out week (forecasts read the previous day: persistence, seasonal-naive).
``held_out`` episodes cover only held-out days. ``all`` ignores the split (exploration, benchmarks).

What a home reads must stay in the split too: with a split, homes are not shifted by whole days
(``ScenarioConfig`` builds the fleet with ``max_day_shift=0``; a shift of up to 14 days would read other
weeks), the day before and after an episode (the +-45-minute time jitter) must be in the split, and a
training episode's history (a task's ``history_days``: the DR customer baseline's metered lookback) must be
training days. Evaluation may read training days as history: the past is not the test.
"""

from __future__ import annotations

import math

import numpy as np

DAY_SPLITS = ("all", "train", "held_out")
HELD_OUT_EVERY_WEEKS = 5


def is_held_out(day: np.ndarray | int) -> np.ndarray | bool:
    """Whether a day (counted from the data's first row) belongs to the held-out weeks."""
    return (np.asarray(day) // 7) % HELD_OUT_EVERY_WEEKS == HELD_OUT_EVERY_WEEKS - 1


def check_split(field_name: str, split: str) -> None:
    if split not in DAY_SPLITS:
        raise ValueError(f"{field_name} must be one of {list(DAY_SPLITS)}, got {split!r}")


def start_days(split: str, first: int, last: int, episode_hours: float, history_days: int = 0) -> np.ndarray:
    """The start days in [first, last] whose episode (from midnight), the day on each side of it and, for
    training, its ``history_days`` before, lie in ``split``."""
    days = np.arange(first, last + 1)
    if split == "all":
        return days
    covered = max(1, math.ceil(episode_hours / 24.0 - 1e-9))
    read = range(-1, covered + 1)  # the episode's days and one on each side (time jitter)
    held = np.stack([is_held_out(days + k) for k in read])
    if split == "held_out":
        return days[held.all(axis=0)]
    history = np.stack([is_held_out(days - k) for k in range(1, history_days + 2)])
    return days[~held.any(axis=0) & ~history.any(axis=0)]
