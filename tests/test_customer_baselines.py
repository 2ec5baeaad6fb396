"""Customer baseline load methods (envs/customer_baselines.py) on hand-worked examples.

Every expected number below is worked out by hand in the comments from the rule as stated in the
method's docstring (never by calling the code under test). None of the rule documents was readable in
full here, so none of their own numeric examples could be used, except the one worked example in the
source of the PJM Same Day (3 + 2) method (event in hours ending 13-17 -> average of hours ending 9-11
and 19-20), which ``test_pjm_same_day_uses_the_sources_own_hour_example`` follows.

Calendar convention of the helper ``calendar``: ``history`` row ``r`` of ``n_days`` rows is
``k = n_days - r`` days before the event day (row -1 = the day before).
"""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.envs.customer_baselines import (
    BASELINE_METHODS,
    HOLIDAY,
    SATURDAY,
    SUNDAY,
    WEEKDAY,
    caiso_10_in_10,
    compute_baseline,
    intervals_per_day,
    nyiso_cbl,
    pjm_high_4_of_5,
    pjm_match_day,
    pjm_same_day_3_2,
)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def calendar(n_days: int, event_weekday: int, holidays_k=()) -> np.ndarray:
    """Day types of the ``n_days`` days before an event on ``event_weekday``; ``holidays_k`` = k's."""
    types = []
    for r in range(n_days):
        k = n_days - r
        wd = (event_weekday - k) % 7
        t = WEEKDAY if wd < 5 else SATURDAY if wd == SAT else SUNDAY
        types.append(HOLIDAY if k in holidays_k else t)
    return np.array(types)


def row(n_days: int, k: int) -> int:
    return n_days - k


def flat_days(levels: np.ndarray, p: int = 24) -> np.ndarray:
    """(days, meters) daily levels -> (days, p, meters) constant through each day."""
    return np.repeat(np.asarray(levels, float)[:, None, :], p, axis=1)


# ------------------------------------------------------------------------------------------------ PJM


def test_pjm_weekday_high_4_of_5_with_symmetric_additive_adjustment():
    """Event on a Wednesday, 14:00-18:00 (intervals 14..17), hourly data, 14 days of history.

    Calendar (k days before): k=1 Tue (row 13), k=2 Mon (row 12, an earlier event day: excluded),
    k=3/4 Sun/Sat, k=5 Fri (row 9, a holiday), k=6 Thu (8), k=7 Wed (7), k=8 Tue (6), k=9 Mon (5),
    k=12 Fri (2), k=13 Thu (1), k=14 Wed (0).
    Eligible weekdays, most recent first: rows 13, 8, 7, 6, 5, 2, 1, 0.

    Meter 0: load[d, h] = c_d + h.  c: row13=100, row8=120, row7=80, row6=110, row5=90, row2=130;
      row12=500 (excluded) and row9=300 (holiday) would change the result if they were used.
      Window = rows 13, 8, 7, 6, 5 (5 most recent). Event-hour averages c + 15.5; low-usage threshold
      = 25 % x mean(c + 15.5) = 25 % x 115.5 = 28.9: no day is low.
      Highest 4 by event-hour average: rows 8 (120), 6 (110), 13 (100), 5 (90); row 7 (80) dropped.
      CBL[h] = (120 + 110 + 100 + 90) / 4 + h = 105 + h.
      SAA window = [14 - 4, 14 - 1) = hours 10, 11, 12: CBL mean = 105 + 11 = 116;
      metered 120, 126, 132 -> mean 126; SAA = 126 - 116 = +10.
      Baseline[h] = 115 + h -> hours 14..17: 129, 130, 131, 132.

    Meter 1: load[d, h] = c_d for h >= 12, c_d / 2 for h < 12 (event-hour average = c_d).
      c: row13=100, row8=100, row7=10, row6=100, row5=90, row2=120 (others as meter 0).
      Initial window rows 13, 8, 7, 6, 5: mean event-hour usage (100+100+10+100+90)/5 = 80,
      threshold 25 % x 80 = 20 -> row 7 (10) is a low-usage day, replaced by the next weekday row 2
      (120 >= 20). Window = rows 13, 8, 6, 5, 2; highest 4 = 120, 100, 100, 100 (90 dropped): CBL = 105
      for h >= 12 and 52.5 before.
      SAA window hours 10, 11, 12: CBL mean (52.5 + 52.5 + 105) / 3 = 70; metered 60 -> SAA = -10
      (negative: the adjustment is symmetric). Baseline over the event = 105 - 10 = 95.
      (Without the low-usage screen the highest 4 of 100, 100, 10, 100, 90 would give 97.5.)
    """
    n = 14
    dt = calendar(n, WED, holidays_k=(5,))
    assert dt[row(n, 5)] == HOLIDAY and dt[row(n, 3)] == SUNDAY and dt[row(n, 4)] == SATURDAY
    excluded = np.zeros(n, bool)
    excluded[row(n, 2)] = True
    c = np.full((n, 2), 40.0)  # weekends
    for r, v0, v1 in [(13, 100, 100), (12, 500, 500), (9, 300, 300), (8, 120, 100), (7, 80, 10),
                      (6, 110, 100), (5, 90, 90), (2, 130, 120), (1, 95, 50), (0, 85, 50)]:
        c[r] = v0, v1
    hours = np.arange(24.0)
    hist = np.empty((n, 24, 2))
    hist[:, :, 0] = c[:, [0]] + hours
    hist[:, :, 1] = np.where(hours >= 12, c[:, [1]], c[:, [1]] / 2)
    event_day = np.full((24, 2), np.nan)  # only the adjustment window is read
    event_day[10:13, 0] = [120, 126, 132]
    event_day[10:13, 1] = 60

    base, info = pjm_high_4_of_5(hist, dt, excluded, WEEKDAY, event_day, 14, 18)
    assert info.rule == "weekday High 4 of 5"
    assert np.flatnonzero(info.window_days[:, 0]).tolist() == [5, 6, 7, 8, 13]
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [5, 6, 8, 13]
    assert np.flatnonzero(info.low_usage_days[:, 1]).tolist() == [7]
    assert np.flatnonzero(info.window_days[:, 1]).tolist() == [2, 5, 6, 8, 13]
    assert np.flatnonzero(info.selected_days[:, 1]).tolist() == [2, 6, 8, 13]
    assert info.adjustment_kind == "additive"
    assert info.adjustment_intervals == ((10, 13),)
    np.testing.assert_allclose(info.adjustment, [10.0, -10.0])
    np.testing.assert_allclose(info.unadjusted[14:18, 0], [119, 120, 121, 122])
    np.testing.assert_allclose(info.unadjusted[14:18, 1], 105.0)
    np.testing.assert_allclose(base[14:18, 0], [129, 130, 131, 132])
    np.testing.assert_allclose(base[14:18, 1], 95.0)


def test_pjm_weekend_high_2_of_3_sunday_holiday_and_saturday():
    """Sunday event 13:00-15:00 with 21 days of history (flat daily levels).

    k=1 Sat (row 20), k=3 Thu (row 18) is a holiday, k=7 Sun (row 14) an earlier event day (excluded),
    k=8 Sat (13), k=14 Sun (7), k=15 Sat (6), k=21 Sun (0).
    Sunday/holiday like days, most recent first: rows 18 (50), 14 (excluded, 999), 7 (70), 0 (60).
    Window rows 18, 7, 0 (low-usage threshold 25 % x 60 = 15: none). Highest 2: 70, 60 -> CBL 65.
    SAA window [9, 12): metered 55 -> SAA = 55 - 65 = -10 -> baseline 55.

    Saturday event (its own calendar, 22 days): Saturdays at k = 7, 14, 21 (rows 15, 8, 1) with 80, 90,
    40; highest 2 = 90, 80 -> CBL 85; weekdays (500) and Sundays (999) are never used.
    """
    n = 21
    dt = calendar(n, SUN, holidays_k=(3,))
    excluded = np.zeros(n, bool)
    excluded[row(n, 7)] = True
    lv = np.full(n, 500.0)
    lv[[20, 13, 6]] = [80, 90, 40]
    lv[[18, 14, 7, 0]] = [50, 999, 70, 60]
    hist = flat_days(lv[:, None])
    event_day = np.full((24, 1), 55.0)
    base, info = pjm_high_4_of_5(hist, dt, excluded, SUNDAY, event_day, 13, 15)
    assert info.rule == "Sunday/holiday High 2 of 3"
    assert np.flatnonzero(info.window_days[:, 0]).tolist() == [0, 7, 18]
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [0, 7]
    np.testing.assert_allclose(info.unadjusted[13:15, 0], 65.0)
    np.testing.assert_allclose(info.adjustment, [-10.0])
    np.testing.assert_allclose(base[13:15, 0], 55.0)
    # a holiday event uses the same Sunday/holiday group
    base_h, _ = pjm_high_4_of_5(hist, dt, excluded, HOLIDAY, event_day, 13, 15, adjust=False)
    np.testing.assert_allclose(base_h[13:15, 0], 65.0)

    n = 22
    dt = calendar(n, SAT)
    lv = np.where(dt == SUNDAY, 999.0, 500.0)
    lv[[15, 8, 1]] = [80, 90, 40]
    assert (dt[[15, 8, 1]] == SATURDAY).all()
    base, info = pjm_high_4_of_5(flat_days(lv[:, None]), dt, np.zeros(n, bool), SATURDAY,
                                 np.full((24, 1), 0.0), 13, 15, adjust=False)
    assert info.rule == "Saturday High 2 of 3" and info.adjustment_kind == "none"
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [8, 15]
    np.testing.assert_allclose(base[:, 0], 85.0)


def test_pjm_lookback_is_45_calendar_days():
    """Only 4 eligible weekdays lie in the last 45 days (the rest are excluded): too few for High 4
    of 5, even though older weekdays exist in the history."""
    n = 60
    dt = calendar(n, WED)
    excluded = np.zeros(n, bool)
    recent_weekdays = [r for r in range(n - 45, n) if dt[r] == WEEKDAY]
    excluded[recent_weekdays[:-4]] = True
    hist = flat_days(np.full((n, 1), 10.0))
    with pytest.raises(ValueError, match="too few eligible weekdays within 45 days"):
        pjm_high_4_of_5(hist, dt, excluded, WEEKDAY, np.ones((24, 1)), 14, 18)
    excluded[recent_weekdays[-5]] = False  # now 5
    base, _ = pjm_high_4_of_5(hist, dt, excluded, WEEKDAY, np.full((24, 1), 10.0), 14, 18)
    np.testing.assert_allclose(base, 10.0)


def test_pjm_same_day_uses_the_sources_own_hour_example():
    """Source example: event in hours ending 13-17 (12:00-17:00) -> average hours ending 9-11
    (08:00-11:00) and 19-20 (18:00-20:00). Metered 10, 11, 12 and 14, 18 kW there:
    (10 + 11 + 12 + 14 + 18) / 5 = 13 kW, flat over the event, NaN elsewhere. The hour ending 12 (40)
    and 18 (50), skipped by the rule, and the event hours themselves (2) must not matter.
    Same with 15-minute data (each hour repeated 4 times; event intervals 48..67)."""
    load = np.zeros(24)
    load[[8, 9, 10]] = [10, 11, 12]
    load[[18, 19]] = [14, 18]
    load[11], load[17] = 40, 50
    load[12:17] = 2
    hist = flat_days(np.ones((3, 1)))
    dt = calendar(3, WED)
    base, info = pjm_same_day_3_2(hist, dt, np.zeros(3, bool), WEEKDAY, load[:, None], 12, 17)
    np.testing.assert_allclose(base[12:17, 0], 13.0)
    assert np.isnan(base[:12]).all() and np.isnan(base[17:]).all()
    assert info.adjustment_intervals == ((8, 11), (18, 20))
    q = np.repeat(load, 4)[:, None]
    hist_q = flat_days(np.ones((3, 1)), 96)
    base_q, info_q = pjm_same_day_3_2(hist_q, dt, np.zeros(3, bool), WEEKDAY, q, 48, 68)
    np.testing.assert_allclose(base_q[48:68, 0], 13.0)
    assert info_q.adjustment_intervals == ((32, 44), (72, 80))


# ---------------------------------------------------------------------------------------------- CAISO


def caiso_case():
    """Thursday event 15:00-19:00, 20 days of history, load[d, h] = c_d + h for 3 identical meters.

    k=1 Wed (row 19), 2 Tue (18), 3 Mon (17), 6 Fri (14), 7 Thu (13, earlier event: excluded),
    8 Wed (12), 9 Tue (11), 10 Mon (10, holiday), 13 Fri (7), 14 Thu (6), 15 Wed (5), 16 Tue (4),
    17 Mon (3), 20 Fri (0).
    10 most recent eligible weekdays: rows 19, 18, 17, 14, 12, 11, 7, 6, 5, 4 with c = 118, 100, 116,
    102, 114, 104, 112, 106, 110, 108 (the even numbers 100..118): mean 109. The excluded day, the
    holiday, weekends and the older weekdays (rows 3, 0) are 900.
    CBL[h] = 109 + h.
    """
    n = 20
    dt = calendar(n, THU, holidays_k=(10,))
    excluded = np.zeros(n, bool)
    excluded[row(n, 7)] = True
    c = np.full(n, 900.0)
    c[[19, 18, 17, 14, 12, 11, 7, 6, 5, 4]] = [118, 100, 116, 102, 114, 104, 112, 106, 110, 108]
    hist = np.repeat((c[:, None] + np.arange(24.0))[:, :, None], 3, axis=2)
    return n, dt, excluded, hist


def test_pjm_match_day_averages_the_three_days_most_like_the_event_days_other_hours():
    """Event in intervals [14, 16) of an hourly day, so the matching hours are all but [13, 17) (the source's
    "hour before and after the event are excluded"): 20 hours. The event day reads 1.0 kW in each of them.

    row  type      matching hours     hours 13, 16   event hours   squared distance
    0    weekday   1.0                50             7             0
    1    weekday   0.75               0.75           3             20 x 0.0625 = 1.25
    2    Saturday  1.0                1.0            100           (not a like day)
    3    weekday   1.25               1.25           4             1.25 (ties row 1: the more recent wins)
    4    weekday   1.0                1.0            5             0
    5    weekday   1.0 (excluded)     1.0            200           (excluded: an earlier event day)
    6    weekday   0.5                0.5            9             20 x 0.25 = 5

    Selected: rows 0, 4 and 3 -> event-hour baseline (7 + 5 + 4) / 3 = 16/3; hour 13: (50 + 1 + 1.25) / 3."""
    levels = [1.0, 0.75, 1.0, 1.25, 1.0, 1.0, 0.5]
    event_vals = [7.0, 3.0, 100.0, 4.0, 5.0, 200.0, 9.0]
    hist = np.repeat(np.array(levels)[:, None], 24, axis=1)
    hist[:, 14:16] = np.array(event_vals)[:, None]
    hist[0, [13, 16]] = 50.0
    day_type = np.array([WEEKDAY, WEEKDAY, SATURDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY])
    excluded = np.array([False, False, False, False, False, True, False])
    today = np.ones((24, 1))
    today[13:17] = np.nan  # only the matching hours are read
    base, info = pjm_match_day(hist[:, :, None], day_type, excluded, WEEKDAY, today, 14, 16)
    assert info.selected_days[:, 0].tolist() == [True, False, False, True, True, False, False]
    np.testing.assert_allclose(base[14:16, 0], 16.0 / 3.0)
    np.testing.assert_allclose(base[13, 0], (50.0 + 1.0 + 1.25) / 3.0)
    assert info.adjustment_kind == "none"
    with pytest.raises(ValueError, match="event_day_load must be finite outside intervals"):
        pjm_match_day(hist[:, :, None], day_type, excluded, WEEKDAY, np.full((24, 1), np.nan), 14, 16)
    with pytest.raises(ValueError, match="too few eligible weekdays"):
        pjm_match_day(hist[:, :, None], day_type, excluded, WEEKDAY, today, 14, 16, n_days=6)


def test_caiso_10_in_10_average_and_capped_day_of_adjustment():
    """Day-of adjustment window [15 - 4, 15 - 1) = hours 11, 12, 13: CBL mean = 109 + 12 = 121.

    Meter A metered 130.1, 133.1, 136.1 (mean 133.1): factor 133.1 / 121 = 1.1 (inside +/-20 %):
      baseline[15..18] = 1.1 x (124, 125, 126, 127) = 136.4, 137.5, 138.6, 139.7.
    Meter B metered 160: factor 160 / 121 = 1.3223 > 1.2 -> capped at 1.2:
      baseline = 1.2 x (124..127) = 148.8, 150.0, 151.2, 152.4 (uncapped would be 163.97 at 15:00).
    Meter C metered 90: 90 / 121 = 0.7438 < 0.8 -> capped at 0.8 (the cap is symmetric):
      baseline = 0.8 x (124..127) = 99.2, 100.0, 100.8, 101.6.
    """
    _n, dt, excluded, hist = caiso_case()
    event_day = np.full((24, 3), np.nan)
    event_day[11:14, 0] = [130.1, 133.1, 136.1]
    event_day[11:14, 1] = 160.0
    event_day[11:14, 2] = 90.0
    base, info = caiso_10_in_10(hist, dt, excluded, WEEKDAY, event_day, 15, 19)
    assert info.rule == "weekday 10-in-10"
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [4, 5, 6, 7, 11, 12, 14, 17, 18, 19]
    np.testing.assert_allclose(info.unadjusted[15:19, 0], [124, 125, 126, 127])
    np.testing.assert_allclose(info.adjustment_uncapped, [1.1, 160 / 121, 90 / 121])
    np.testing.assert_allclose(info.adjustment, [1.1, 1.2, 0.8])
    assert info.adjustment_capped.tolist() == [False, True, True]
    np.testing.assert_allclose(base[15:19, 0], [136.4, 137.5, 138.6, 139.7])
    np.testing.assert_allclose(base[15:19, 1], [148.8, 150.0, 151.2, 152.4])
    np.testing.assert_allclose(base[15:19, 2], [99.2, 100.0, 100.8, 101.6])
    # a wider cap lets meter B's uncapped factor through: 160 / 121 x 124 = 163.97
    base_wide, _ = caiso_10_in_10(hist, dt, excluded, WEEKDAY, event_day, 15, 19, cap=0.5)
    np.testing.assert_allclose(base_wide[15, 1], 160 / 121 * 124)
    assert base_wide[15, 1] != pytest.approx(base[15, 1])


def test_caiso_weekend_4_in_4_and_fewer_days():
    """Saturday event, 16 days: weekend/holiday days most recent first: k=3 Wed holiday (row 13, 40),
    k=6 Sun (10, 50), k=7 Sat (9, excluded, 999), k=13 Sun (3, 60), k=14 Sat (2, 70).
    4-in-4 = rows 13, 10, 3, 2: (40 + 50 + 60 + 70) / 4 = 55. Day-of window [12 - 4, 12 - 1) = 8..10,
    metered 60.5 -> factor 60.5 / 55 = 1.1 -> baseline 60.5.
    With only 3 such days (row 2 excluded too) the default needs 4 -> ValueError; min_days=3 accepts
    (40 + 50 + 60) / 3 = 50."""
    n = 16
    dt = calendar(n, SAT, holidays_k=(3,))
    excluded = np.zeros(n, bool)
    excluded[row(n, 7)] = True
    lv = np.full(n, 500.0)
    lv[[13, 10, 9, 3, 2]] = [40, 50, 999, 60, 70]
    hist = flat_days(lv[:, None])
    base, info = caiso_10_in_10(hist, dt, excluded, SATURDAY, np.full((24, 1), 60.5), 12, 14)
    assert info.rule == "weekend/holiday 4-in-4"
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [2, 3, 10, 13]
    np.testing.assert_allclose(info.unadjusted[12, 0], 55.0)
    np.testing.assert_allclose(base[12:14, 0], 60.5)
    excluded[2] = True
    with pytest.raises(ValueError, match="min_days=4"):
        caiso_10_in_10(hist, dt, excluded, SATURDAY, np.full((24, 1), 60.5), 12, 14)
    base3, _ = caiso_10_in_10(hist, dt, excluded, SATURDAY, np.zeros((24, 1)), 12, 14,
                              adjust=False, min_days=3)
    np.testing.assert_allclose(base3[12, 0], 50.0)


# ---------------------------------------------------------------------------------------------- NYISO


def test_nyiso_weekday_5_of_10_low_usage_and_capped_weather_adjustment():
    """Thursday event 14:00-18:00, 25 days, flat daily levels, 3 identical-history meters.

    Weekdays (k, row): 1 Wed (24: the day before, never used; 999), 2 Tue (23), 3 Mon (22), 6 Fri (19),
    7 Thu (18: earlier event, excluded, 999), 8 Wed (17), 9 Tue (16), 10 Mon (15), 13 Fri (12),
    14 Thu (11), 15 Wed (10), 16 Tue (9), 17 Mon (8), 20 Fri (5), ...
    Initial 10: rows 23, 22, 19, 17, 16, 15, 12, 11, 10, 9 = 100, 90, 110, 80, 120, 70, 130, 60, 140, 20.
    Seed = 140, threshold 25 % x 140 = 35 -> row 9 (20) is low, replaced by row 8 (150).
    Window = 100, 90, 110, 80, 120, 70, 130, 60, 140, 150; highest 5 = 150, 140, 130, 120, 110 -> CBL 130.
    (Without the screen: highest 5 of the initial 10 = 140..100 -> 120; with the day before: 999.)
    Weather-sensitive window [14 - 4, 14 - 2) = hours 10, 11.
    Meter A metered 143: 143 / 130 = 1.1 -> 143. Meter B 200: 1.538 -> capped 1.2 -> 156.
    Meter C 91: 0.7 -> capped 0.8 -> 104.
    """
    n = 25
    dt = calendar(n, THU)
    excluded = np.zeros(n, bool)
    excluded[row(n, 7)] = True
    lv = np.full(n, 999.0)
    lv[[23, 22, 19, 17, 16, 15, 12, 11, 10, 9, 8]] = [100, 90, 110, 80, 120, 70, 130, 60, 140, 20, 150]
    lv[[5, 4, 3, 2, 1]] = 30.0
    assert (dt[[24, 23, 22, 19, 17, 16, 15, 12, 11, 10, 9, 8]] == WEEKDAY).all()
    hist = flat_days(np.repeat(lv[:, None], 3, axis=1))
    event_day = np.full((24, 3), np.nan)
    event_day[10:12] = [143.0, 200.0, 91.0]
    base, info = nyiso_cbl(hist, dt, excluded, WEEKDAY, event_day, 14, 18)
    assert info.rule == "weekday highest 5 of 10"
    assert np.flatnonzero(info.low_usage_days[:, 0]).tolist() == [9]
    assert np.flatnonzero(info.window_days[:, 0]).tolist() == [8, 10, 11, 12, 15, 16, 17, 19, 22, 23]
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [8, 10, 12, 16, 19]
    np.testing.assert_allclose(info.unadjusted, 130.0)
    assert info.adjustment_intervals == ((10, 12),)
    np.testing.assert_allclose(info.adjustment_uncapped, [1.1, 200 / 130, 0.7])
    np.testing.assert_allclose(info.adjustment, [1.1, 1.2, 0.8])
    assert info.adjustment_capped.tolist() == [False, True, True]
    np.testing.assert_allclose(base[14:18], np.tile([143.0, 156.0, 104.0], (4, 1)))


def test_nyiso_weekend_highest_2_of_3_like_days():
    """Saturday event, 22 days: Saturdays k=7, 14, 21 (rows 15, 8, 1) = 80, 90, 40; Sundays 999,
    weekdays 500. Highest 2 of 3 = (90 + 80) / 2 = 85. Window [13 - 4, 13 - 2) metered 93.5 ->
    93.5 / 85 = 1.1 -> 93.5."""
    n = 22
    dt = calendar(n, SAT)
    lv = np.where(dt == SUNDAY, 999.0, 500.0)
    lv[[15, 8, 1]] = [80, 90, 40]
    hist = flat_days(lv[:, None])
    base, info = nyiso_cbl(hist, dt, np.zeros(n, bool), SATURDAY, np.full((24, 1), 93.5), 13, 16)
    assert info.rule == "Saturday highest 2 of 3"
    assert np.flatnonzero(info.selected_days[:, 0]).tolist() == [8, 15]
    np.testing.assert_allclose(info.unadjusted, 85.0)
    np.testing.assert_allclose(base[13:16, 0], 93.5)


# ------------------------------------------------------------------------------- properties of all methods


def random_case(rng, n_meters: int, p: int = 24, n_days: int = 60):
    dt = calendar(n_days, TUE, holidays_k=(11, 40))
    hist = rng.lognormal(0.0, 0.5, size=(n_days, p, n_meters)) * rng.uniform(1, 5, size=(n_days, 1, n_meters))
    low = rng.random((n_days, n_meters)) < 0.08  # some low-usage days
    hist *= np.where(low, 0.05, 1.0)[:, None, :]
    excluded = rng.random((n_days, n_meters)) < 0.1
    outage = excluded & (rng.random((n_days, n_meters)) < 0.5)
    hist[np.broadcast_to(outage[:, None, :], hist.shape)] = np.nan  # outage days may be NaN
    event_day = rng.lognormal(0.0, 0.5, size=(p, n_meters))
    return hist, dt, excluded, event_day


@pytest.mark.parametrize("name", sorted(BASELINE_METHODS))
@pytest.mark.parametrize("event_type", [WEEKDAY, SATURDAY, SUNDAY])
def test_vectorized_equals_each_meter_alone(name, event_type):
    rng = np.random.default_rng(7)
    hist, dt, excluded, event_day = random_case(rng, n_meters=6)
    base, info = compute_baseline(name, hist, dt, excluded, event_type, event_day, 15, 19)
    assert base.shape == (24, 6)
    for i in range(6):
        b1, i1 = compute_baseline(name, hist[:, :, i:i + 1], dt, excluded[:, i:i + 1], event_type,
                                  event_day[:, i:i + 1], 15, 19)
        np.testing.assert_array_equal(b1[:, 0], base[:, i])
        np.testing.assert_array_equal(i1.selected_days[:, 0], info.selected_days[:, i])
        np.testing.assert_array_equal(i1.adjustment, info.adjustment[i:i + 1])


@pytest.mark.parametrize("name", sorted(BASELINE_METHODS))
def test_finer_intervals_give_the_same_baseline(name):
    """Hourly data repeated 4x as 15-minute data: every rule quantity is the same mean."""
    rng = np.random.default_rng(3)
    hist, dt, excluded, event_day = random_case(rng, n_meters=3)
    base, _ = compute_baseline(name, hist, dt, excluded, WEEKDAY, event_day, 15, 19)
    base_q, _ = compute_baseline(name, np.repeat(hist, 4, axis=1), dt, excluded, WEEKDAY,
                                 np.repeat(event_day, 4, axis=0), 60, 76)
    np.testing.assert_allclose(base_q, np.repeat(base, 4, axis=0), rtol=1e-12)


def test_intervals_per_day_helper():
    assert intervals_per_day(60) == 24 and intervals_per_day(15) == 96 and intervals_per_day(5) == 288
    for bad in (7, 0, -15, 120, float("nan")):
        with pytest.raises(ValueError, match="interval_minutes must divide 60"):
            intervals_per_day(bad)


def good_args(p: int = 24):
    n = 30
    return {"history": flat_days(np.full((n, 2), 5.0), p), "day_type": calendar(n, WED),
                "excluded": np.zeros(n, bool), "event_day_type": WEEKDAY,
                "event_day_load": np.full((p, 2), 5.0),
                "event_start": 14 * p // 24, "event_end": 18 * p // 24}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"history": np.ones((30, 24))}, "history must be a 3-D array"),
        ({"history": np.ones((30, 12, 2)), "event_day_load": np.ones((12, 2)),
          "event_start": 7, "event_end": 9},
         r"intervals_per_day \(history.shape\[1\]\) must be a positive multiple of 24"),
        ({"day_type": np.zeros(29, int)}, r"day_type must have shape \(days,\)"),
        ({"day_type": np.full(30, 7)}, "day_type values must be"),
        ({"excluded": np.zeros((30, 3), bool)}, "excluded must have shape"),
        ({"excluded": np.zeros(30)}, "excluded must be a bool array"),
        ({"event_day_type": 9}, "event_day_type must be one of"),
        ({"event_day_load": np.ones((24, 3))}, "event_day_load must have shape"),
        ({"event_start": 20, "event_end": 25}, "event window must satisfy 0 <= event_start < event_end"),
        ({"event_start": 18, "event_end": 14}, "event window must satisfy"),
        ({"event_start": 2.0}, "event_start must be an integer"),
        ({"event_start": 2, "event_end": 5},
         r"window \[event_start -4 h, event_start -1 h\) must lie within"),
        ({"history": np.where(np.arange(30)[:, None, None] == 27, np.nan, flat_days(np.full((30, 2), 5.0)))},
         "history must be finite on days that are not excluded"),
        ({"history": flat_days(np.full((4, 2), 5.0)), "day_type": calendar(4, WED),
          "excluded": np.zeros(4, bool)},
         "too few eligible weekdays"),
    ],
)
def test_bad_inputs_raise_named_value_errors(change, match):
    args = good_args() | change
    with pytest.raises(ValueError, match=match):
        pjm_high_4_of_5(**args)


def test_bad_inputs_specific_to_methods():
    args = good_args()
    with pytest.raises(ValueError, match=r"baseline method must be one of \['caiso_10_in_10'"):
        compute_baseline("pjm_high_5_of_4", *args.values())
    with pytest.raises(ValueError, match=r"window \[event_end \+1 h, event_end \+3 h\) must lie within"):
        pjm_same_day_3_2(**(args | {"event_start": 18, "event_end": 22}))
    with pytest.raises(ValueError, match="event_day_load must be finite in intervals"):
        nyiso_cbl(**(args | {"event_day_load": np.full((24, 2), np.nan)}))
    with pytest.raises(ValueError, match=r"min_days must be in \[1, 10\]"):
        caiso_10_in_10(**args, min_days=11)
    with pytest.raises(ValueError, match=r"cap must be in \[0, 1\)"):
        nyiso_cbl(**args, cap=1.5)
    # NaN history is fine on excluded days
    hist = args["history"].copy()
    hist[27] = np.nan
    excluded = np.zeros(30, bool)
    excluded[27] = True
    base, _ = caiso_10_in_10(**(args | {"history": hist, "excluded": excluded}))
    np.testing.assert_allclose(base, 5.0)
