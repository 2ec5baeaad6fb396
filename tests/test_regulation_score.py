"""PJM regulation performance score on hand-made signals whose answers are worked out by hand.

Most tests use a +-1 square wave ``x_P(t) = +1 if t mod P < P/2 else -1`` over one hour of 10 s
samples (n = 360). Over whole periods it has mean 0 and mean |x| = 1, and for two copies shifted by
L <= P/2 samples the samples disagree at a fraction 2L/P of positions. Each disagreement
contributes |diff| = 2, so mean |x(t) - x(t+L)| = 4L/P and the Pearson correlation is
(agree - disagree)/n = 1 - 4L/P.
"""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.envs.regulation_score import (
    RegulationScore,
    aggregate_score,
    hourly_scores,
    performance_score,
    rolling_score,
)

N = 360  # one hour of 10 s samples


def square(n: int, period: int, shift: int = 0) -> np.ndarray:
    t = np.arange(n) + shift
    return np.where(t % period < period // 2, 1.0, -1.0)


def delayed_pair(period: int, delay: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """signal(t) = x(t + delay), response(t) = x(t) = signal(t - delay): a pure delay, with history."""
    return square(n, period, delay), square(n, period, 0)


def assert_score(res: RegulationScore, accuracy, delay, precision, delay_s, tol=1e-12):
    assert float(res.accuracy) == pytest.approx(accuracy, abs=tol)
    assert float(res.delay) == pytest.approx(delay, abs=tol)
    assert float(res.precision) == pytest.approx(precision, abs=tol)
    assert float(res.delay_s) == pytest.approx(delay_s, abs=tol)
    assert float(res.composite) == pytest.approx((accuracy + delay + precision) / 3.0, abs=tol)


def test_perfect_tracking():
    s = 3.0 * np.sin(2 * np.pi * np.arange(N) / 90.0) + 0.5 * square(N, 24)
    # rho(0) = 1, D(0) = |(0 - 5)/5| = 1, error 0 -> P = 1; composite (1 + 1 + 1)/3 = 1.
    for rule in ("joint", "max_correlation"):
        assert_score(performance_score(s, s, delay_rule=rule), 1.0, 1.0, 1.0, 0.0)


def test_pure_two_minute_delay():
    s, r = delayed_pair(period=72, delay=12)
    assert np.array_equal(r[12:], s[:-12])  # response = signal 12 samples (2 min) later
    # delta = 12: the overlap s[0:348] vs r[12:360] is the same series -> rho = 1;
    # D = |(2 - 5)/5| = 0.6. Precision: P = 72, L = 12 -> mean|r - s| = 4*12/72 = 2/3 over the 5 whole
    # periods, mean|s| = 1 -> P = 1 - 2/3 = 1/3. Composite (1 + 0.6 + 1/3)/3 = 29/45.
    # The joint rule also picks delta = 12: at delta = 0, rho = 1 - 4*12/72 = 1/3 and 1/3 + 1 < 1 + 0.6.
    for rule in ("joint", "max_correlation"):
        res = performance_score(s, r, delay_rule=rule)
        assert_score(res, 1.0, 0.6, 1.0 / 3.0, 120.0)
        assert float(res.composite) == pytest.approx(29.0 / 45.0, abs=1e-12)


def test_scaled_response():
    s = 2.0 * square(N, 40) + np.sin(2 * np.pi * np.arange(N) / 360.0)
    # Pearson ignores scale: rho(0) = 1, D = 1. |0.8 s - s| = 0.2 |s| -> P = 1 - 0.2 = 0.8.
    # Composite (1 + 1 + 0.8)/3 = 14/15.
    assert_score(performance_score(s, 0.8 * s), 1.0, 1.0, 0.8, 0.0)
    # Over-delivery is penalised the same way: |1.2 s - s| = 0.2 |s|.
    assert_score(performance_score(s, 1.2 * s), 1.0, 1.0, 0.8, 0.0)


def test_delay_beyond_five_minutes_uses_allowed_range_only():
    s, r = delayed_pair(period=72, delay=40)  # 400 s late: rho = 1 only at delta = 400 s, not allowed
    # By hand: at delta = 300 s the residual lag is 10 samples -> rho ~ 1 - 40/72 = 0.44 (partial
    # periods in the overlap move it slightly); at delta = 0 the lag is 40 > 36 ->
    # rho = -1 + 4*(40-36)/72 = -7/9. Correlation rises with delta, so both rules stop at the 300 s
    # edge, with D = 0. Precision: 40 > 36 -> disagree fraction (72-40)*2/72 = 8/9 -> mean|r-s| = 16/9
    # > 1 -> 1 - 16/9 < 0 -> clipped to 0.
    corr = [np.corrcoef(s[: N - k], r[k:])[0, 1] for k in range(31)]  # independent reference
    assert corr[0] == pytest.approx(-7.0 / 9.0, abs=1e-12)
    assert np.corrcoef(s[: N - 40], r[40:])[0, 1] == pytest.approx(1.0)  # outside the range
    for rule in ("joint", "max_correlation"):
        res = performance_score(s, r, delay_rule=rule)
        assert float(res.delay_s) == 300.0 and float(res.delay) == 0.0
        assert float(res.accuracy) == pytest.approx(max(corr), abs=1e-12)
        assert float(res.accuracy) == pytest.approx(4.0 / 9.0, abs=0.05) and float(res.accuracy) < 0.5
        assert float(res.precision) == 0.0


def test_joint_rule_differs_from_max_correlation():
    s, r = delayed_pair(period=180, delay=12)
    # delta = 0: 2 whole periods, L = 12 -> rho = 1 - 48/180 = 11/15, D = 1, sum 26/15 ~ 1.733;
    # delta = 12: rho = 1, D = 0.6, sum 1.6. The joint rule takes delta = 0 and max correlation takes 12.
    # Precision (unshifted) = 1 - 48/180 = 11/15 under both rules.
    assert_score(performance_score(s, r, delay_rule="joint"), 11 / 15, 1.0, 11 / 15, 0.0)
    assert_score(performance_score(s, r, delay_rule="max_correlation"), 1.0, 0.6, 11 / 15, 120.0)


def test_zero_response():
    s = square(N, 72)
    # A flat response has no defined correlation at any delay -> accuracy 0, delay score 0,
    # delay_s 300 (documented); precision 1 - mean|0 - s|/mean|s| = 1 - 1 = 0; composite 0.
    for rule in ("joint", "max_correlation"):
        assert_score(performance_score(s, np.zeros(N), delay_rule=rule), 0.0, 0.0, 0.0, 300.0)
    # A constant non-zero response (an offset, no tracking) is treated the same for A and D;
    # mean|0.5 - s| = 0.5*0.5 + 1.5*0.5 = 1 -> P = 0.
    assert_score(performance_score(s, np.full(N, 0.5)), 0.0, 0.0, 0.0, 300.0)


def test_idle_signal_edge_cases():
    z = np.zeros(N)
    # Signal and response both flat: rho = 1 (manual's slope rule with both slopes 0), delta = 0;
    # mean|s| = 0 and error 0 -> P = 1.
    assert_score(performance_score(z, z), 1.0, 1.0, 1.0, 0.0)
    # Flat zero signal, moving response: rho undefined at every delay -> A = D = 0; error != 0 -> P = 0.
    assert_score(performance_score(z, square(N, 72)), 0.0, 0.0, 0.0, 300.0)


def test_negative_correlation_clipped():
    s = square(N, 72)
    # r = -s: rho(0) = -1. The best delay is 36 samples (half a period), which is outside the range, so
    # rho increases with delta up to delta = 30 (residual lag 30 -> about 1 - 4*6/72 = 2/3).
    # Precision: |-s - s| = 2|s| -> 1 - 2 < 0 -> 0.
    res = performance_score(s, -s, delay_rule="max_correlation")
    assert float(res.delay_s) == 300.0
    assert float(res.accuracy) == pytest.approx(2.0 / 3.0, abs=0.05)
    assert float(res.precision) == 0.0
    # Over a window too short for anything but a negative correlation, the accuracy clips to 0.
    t = np.arange(32, dtype=float)
    res = performance_score(t, -t)
    assert float(res.accuracy) == 0.0 and float(res.precision) == 0.0


def test_vectorized_equals_rows():
    rows = [delayed_pair(72, 12), delayed_pair(72, 40), delayed_pair(180, 12),
            (square(N, 72), np.zeros(N)), (square(N, 40), 0.8 * square(N, 40)), (np.zeros(N), np.zeros(N))]
    S = np.stack([a for a, _ in rows])
    R = np.stack([b for _, b in rows])
    for rule in ("joint", "max_correlation"):
        batch = performance_score(S, R, delay_rule=rule)
        batch4 = performance_score(S.reshape(2, 3, N), R.reshape(2, 3, N), delay_rule=rule)
        for i, (a, b) in enumerate(rows):
            one = performance_score(a, b, delay_rule=rule)
            for field in RegulationScore._fields:
                assert getattr(batch, field).shape == (6,)
                assert getattr(batch, field)[i] == getattr(one, field)
                assert getattr(batch4, field)[i // 3, i % 3] == getattr(one, field)
    one = performance_score(S[0], R[0])
    assert np.ndim(one.composite) == 0 and isinstance(float(one.composite), float)


def test_other_sample_period():
    # 2 s samples: 150 candidate steps; a 60 s delay (30 steps) -> D = |(1 - 5)/5| = 0.8.
    n = 1800
    x = square(n + 30, 360)
    s, r = x[30:], x[:n]
    res = performance_score(s, r, sample_s=2.0, delay_rule="max_correlation")
    assert float(res.delay_s) == pytest.approx(60.0) and float(res.delay) == pytest.approx(0.8)
    assert float(res.accuracy) == pytest.approx(1.0)


def test_hourly_and_aggregate():
    s = square(N, 40)
    sig = np.concatenate([s, s, s])
    resp = np.concatenate([s, 0.8 * s, np.zeros(N)])
    h = hourly_scores(sig, resp)
    # Hour composites: perfect 1, scaled 14/15, zero 0.
    np.testing.assert_allclose(h.composite, [1.0, 14 / 15, 0.0], atol=1e-12)
    assert aggregate_score(h.composite) == pytest.approx((1 + 14 / 15 + 0) / 3)  # = 29/45
    assert aggregate_score(h.composite, window_hours=2) == pytest.approx((14 / 15 + 0) / 2)
    np.testing.assert_allclose(rolling_score(h.composite, window_hours=2), [1.0, (1 + 14 / 15) / 2, 7 / 15])
    # Hours spanning the series are scored on their own: the same as per-hour calls.
    second = performance_score(s, 0.8 * s)
    assert h.precision[1] == second.precision
    # Batched series: (2, 3 hours).
    h2 = hourly_scores(np.stack([sig, sig]), np.stack([resp, sig]))
    assert h2.composite.shape == (2, 3)
    np.testing.assert_allclose(h2.composite[1], 1.0)
    # A trailing partial hour: error unless dropped.
    with pytest.raises(ValueError, match="multiple of 360"):
        hourly_scores(sig[:-5], resp[:-5])
    np.testing.assert_allclose(hourly_scores(sig[:-5], resp[:-5], drop_incomplete=True).composite,
                               [1.0, 14 / 15], atol=1e-12)


def test_aggregate_skips_nan_hours():
    hourly = np.array([1.0, np.nan, 0.5])
    assert aggregate_score(hourly) == pytest.approx(0.75)
    np.testing.assert_allclose(rolling_score(hourly, window_hours=2), [1.0, 1.0, 0.5])
    assert np.isnan(aggregate_score(np.array([np.nan, np.nan])))
    np.testing.assert_allclose(aggregate_score(np.array([[1.0, 0.0], [0.5, np.nan]])), [0.5, 0.5])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"signal": np.zeros(N), "response": np.zeros(N - 1)}, "response must have the same shape"),
        ({"signal": np.r_[np.nan, np.zeros(N - 1)], "response": np.zeros(N)}, "signal must be finite"),
        ({"signal": np.zeros(N), "response": np.r_[np.zeros(N - 1), np.inf]}, "response must be finite"),
        ({"signal": np.zeros(N), "response": np.zeros(N), "sample_s": 7.0}, "sample_s must divide 300"),
        ({"signal": np.zeros(N), "response": np.zeros(N), "sample_s": 0.0}, r"sample_s must be in \(0, 300\]"),
        ({"signal": np.zeros(N), "response": np.zeros(N), "sample_s": -10.0}, r"sample_s must be in \(0, 300\]"),
        ({"signal": np.zeros(N), "response": np.zeros(N), "sample_s": float("nan")}, "sample_s must be in"),
        ({"signal": np.zeros(31), "response": np.zeros(31)}, "at least 32 samples"),
        ({"signal": np.zeros(N), "response": np.zeros(N), "delay_rule": "best"}, "delay_rule must be one of"),
        ({"signal": 1.0, "response": 1.0}, "signal must have at least 1 dimension"),
    ],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        performance_score(**kwargs)


def test_bad_inputs_hourly_and_aggregate():
    with pytest.raises(ValueError, match="hour_s must be a positive multiple"):
        hourly_scores(np.zeros(N), np.zeros(N), hour_s=3605.0)
    with pytest.raises(ValueError, match="sample_s must divide 300"):
        hourly_scores(np.zeros(N), np.zeros(N), sample_s=7.0)
    with pytest.raises(ValueError, match="at least one whole hour"):
        hourly_scores(np.zeros(N - 1), np.zeros(N - 1), drop_incomplete=True)
    with pytest.raises(ValueError, match="window_hours must be an integer >= 1"):
        rolling_score(np.ones(3), window_hours=0)
    with pytest.raises(ValueError, match="window_hours must be an integer >= 1"):
        aggregate_score(np.ones(3), window_hours=1.5)
    with pytest.raises(ValueError, match="hourly must have shape"):
        aggregate_score(np.ones(0))
    with pytest.raises(ValueError, match="hourly must not contain inf"):
        rolling_score(np.array([1.0, np.inf]))
