"""The day-ahead market commitment (MarketBid) on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.data.profiles import G, H, Profiles
from vpprl.envs import VppEnv
from vpprl.envs.fleet_config import FleetConfig, Ownership


def _flat_homes(bid: dict) -> VppEnv:
    """Five homes drawing a flat 1 kW, each with a battery; the import price is 0.20 $/kWh except 0.50 in
    [18:00, 20:00): with 2 bid hours the commitment is 18:00-20:00 (the dearest hours, worked by hand)."""
    rows = 96 * 14
    home = np.zeros((rows, 1, len(H)), np.float32)
    home[:, 0, H["base_load_kw"]] = 1.0
    grid = np.zeros((rows, len(G)))
    hour = (np.arange(rows) % 96) / 4.0
    grid[:, G["price_import"]] = np.where((hour >= 18.0) & (hour < 20.0), 0.5, 0.2)
    grid[:, G["outdoor_temp_c"]] = 15.0
    p = Profiles(900, home, grid, "2024-01-01", ("flat",), extra={"cyclic": True})
    return VppEnv(profiles=p, task={"market_bid": bid},
                  fleet=FleetConfig(num_homes=5, seed=2, ownership=Ownership(1.0, 0, 0, 0, 0, 0),
                                    battery_reserve_soc=(0.0, 0.0), load_scale_sigma=0.0),
                  start_day=3, episode_hours=24.0)


def _run(env: VppEnv, discharge: float) -> tuple[list[float], dict]:
    env.reset(seed=0)
    b = env.fleet.battery.params
    env.fleet.set_device_states({"battery": b.capacity_kwh * b.soc_max})  # full: enough for the 2 hours
    task = env.task("market_bid")
    rewards = []
    for t in range(96):
        action = np.zeros((5, 6), np.float32)
        if task.commit_kw[t] > 0:
            action[:, 0] = discharge
        _, _, _, _, info = env.step(action)
        rewards.append(float(info["reward_per_home"].sum()))
    return rewards, info["kpis"]


def test_the_commitment_sits_in_the_dearest_hours_against_a_persistence_forecast():
    env = _flat_homes({"offer_kw_per_home": 0.4, "bid_hours": 2})
    env.reset(seed=0)
    task = env.task("market_bid")
    np.testing.assert_allclose(np.flatnonzero(task.commit_kw) / 4.0, np.arange(18.0, 20.0, 0.25))
    np.testing.assert_allclose(task.commit_kw[task.commit_kw > 0], 2.0)  # 0.4 kW x 5 homes
    np.testing.assert_allclose(task.forecast_kw, 5.0, rtol=1e-5)  # yesterday's flat 5 kW


def test_an_idle_fleet_is_charged_for_its_whole_shortfall_and_a_delivering_one_paid_its_commitment():
    """Idle: each committed 15-min step delivers 0 of 2 kW: -1.5 x 0.50 x 2 x 0.25 = -0.375 $, x 8 steps = -3.00 $.
    Batteries discharging far more than 2 kW: paid 0.50 x 2 x 0.25 = 0.25 $ a step (over-delivery is not paid),
    x 8 = 2.00 $."""
    env = _flat_homes({"offer_kw_per_home": 0.4, "bid_hours": 2, "shortfall_multiplier": 1.5})
    idle, kpis = _run(env, 0.0)
    assert sum(idle) == pytest.approx(-3.0, rel=1e-4) and kpis["bid_shortfall_charge"] == pytest.approx(3.0, rel=1e-4)
    assert kpis["bid_shortfall_kwh"] == pytest.approx(4.0, rel=1e-4)
    paid, kpis = _run(env, -1.0)
    assert kpis["bid_shortfall_kwh"] == pytest.approx(0.0, abs=1e-6)
    assert kpis["bid_paid"] == pytest.approx(2.0, rel=1e-4) and kpis["bid_shortfall_charge"] == 0.0
    wear = kpis["degradation_cost"]
    assert wear > 0 and sum(paid) == pytest.approx(2.0 - wear, rel=1e-3)  # the reward also carries the wear
    assert kpis["bid_performance"] == pytest.approx(1.0)


def test_bad_market_bid_settings_are_refused():
    with pytest.raises(ValueError, match=r"MarketBid.bid_hours must be in \[0, 24\]"):
        _flat_homes({"bid_hours": 30})
    with pytest.raises(ValueError, match="whole number of hours"):
        _flat_homes({"bid_hours": 2.5})


def test_regulation_capacity_paid_by_the_pjm_score_tracks_the_score():
    """Regulation capacity paid as PJM pays it: the hour's credit x its performance score. A fleet left to its own
    control barely tracks the signal: it is paid a fraction of the full credit, equal to credit x the hourly score
    computed by the scoring module on the recorded signal and response; at 15-min steps the score cannot be read:
    refused."""
    from vpprl.envs.tasks import score_series

    env = VppEnv(task={"frequency_regulation": {"capacity_paid_by_score": True, "capacity_kw_per_home": 1.0,
                                                "penalty_per_kwh": 0.0}},
                 fleet=FleetConfig(num_homes=4, seed=1), start_day=100, dt_s=60, episode_hours=2.0)
    env.reset(seed=0)
    task = env.task("frequency_regulation")
    for _ in range(env.episode_steps):
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    full = 0.03 * 1.0 * 4 * 2.0  # $/kW-h x kW x homes x hours
    scores = [score_series(task.signal[h * 60:(h + 1) * 60], task.response[h * 60:(h + 1) * 60], 60)["reg_score"]
              for h in range(2)]
    assert info["kpis"]["reg_capacity_credit"] == pytest.approx(full / 2 * sum(scores), rel=1e-6)
    assert 0.0 <= info["kpis"]["reg_capacity_credit"] < full
    with pytest.raises(ValueError, match="capacity_paid_by_score needs dt_s"):
        VppEnv(task={"frequency_regulation": {"capacity_paid_by_score": True}}, fleet=FleetConfig(num_homes=2),
               dt_s=900).reset(seed=0)


def test_the_oracle_bounds_its_gap_when_regulation_capacity_is_paid_by_score():
    """The LP plans the credit at a score of 1; the replayed return falls short by credit x (1 - score), within the
    plan's gap bound (the full credit), and with the flat credit the bound is 0."""
    from test_agents import _replay_oracle

    for by_score in (True, False):
        env = VppEnv(task={"frequency_regulation": {"capacity_paid_by_score": by_score}},
                     fleet=FleetConfig(num_homes=4, seed=1), start_day=100, dt_s=60, episode_hours=2.0)
        env.set_perfect_foresight(True)
        env.reset(seed=0)
        oracle, total, _ = _replay_oracle(env)
        bound = oracle.plan.gap_bound
        assert bound == (pytest.approx(0.03 * 4 * 2.0) if by_score else 0.0)
        assert abs(total + oracle.plan.objective) <= bound + 1e-3
