"""Grid-service tasks: rewards on hand-checkable cases, event schedules, the regulation score."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.data.profiles import G
from vpprl.envs import VppEnv
from vpprl.envs.fleet_config import FleetConfig, Ownership
from vpprl.envs.tasks import score_series, split_by_weight

NO_DEVICES = Ownership(0, 0, 0, 0, 0, 0)


def env_with(task, n=20, devices=NO_DEVICES, **kw) -> VppEnv:
    return VppEnv(task=task, fleet=FleetConfig(num_homes=n, ownership=devices),
                  cost_weights={k: 0.0 for k in ("thermal_discomfort_degh", "dhw_discomfort_degh", "ev_unmet_kwh",
                                                 "battery_reserve_kwh_h", "site_limit_kwh", "flex_unserved_kwh")},
                  **kw)


def test_price_arbitrage_reward_is_minus_the_bill():
    env = env_with("price_arbitrage", devices=Ownership(0, 0, 1.0, 0, 0, 0))  # PV so some homes export
    env.reset(seed=3, options=None)
    for _ in range(60):
        grid = env.fleet.grid.copy()
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
        net = env.fleet.net_kw.astype(np.float64)
        bill = (grid[G["price_import"]] * np.maximum(net, 0) - grid[G["price_export"]] * np.maximum(-net, 0)) * 0.25
        np.testing.assert_allclose(info["reward_per_home"], -bill, rtol=1e-5, atol=1e-8)


def test_peak_shaving_penalty_and_its_split():
    env = env_with({"peak_shaving": {"limit_kw_per_home": 0.3, "penalty_per_kwh": 2.0}})
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    agg = info["aggregate_kw"]
    overshoot = max(agg - 0.3 * 20, 0.0)
    assert overshoot > 0 and info["feeder_overshoot_kw"] == pytest.approx(overshoot, rel=1e-6)
    per_home = info["reward_per_home"]
    assert per_home.sum() == pytest.approx(-2.0 * overshoot * 0.25, rel=1e-5)
    net = env.fleet.net_kw
    assert np.argmin(per_home) == np.argmax(net)  # the biggest importer carries the biggest share


def test_split_by_weight():
    np.testing.assert_allclose(split_by_weight(6.0, np.array([1.0, 2.0, 0.0])), [2.0, 4.0, 0.0])
    np.testing.assert_allclose(split_by_weight(3.0, np.zeros(3)), [1.0, 1.0, 1.0])
    # rows (K fleets in one pass): each row's total split within the row, equally where a row weighs nothing
    rows = split_by_weight(np.array([6.0, 3.0, 0.0]), np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [5.0, 1.0, 0.0]]))
    np.testing.assert_allclose(rows, [[2.0, 4.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])


def test_demand_response_events_and_credit():
    env = env_with({"demand_response": {"commit_kw_per_home": 0.2, "start_window_h": (17.0, 17.0),
                                        "duration_h": 1.0}}, devices=Ownership(1.0, 0, 0, 0, 0, 0),
                   start_day=30)
    env.reset(seed=0)
    task = env.tasks[0]
    active_hours = np.flatnonzero(task.active[:96]) * 0.25
    np.testing.assert_allclose(active_hours, [17.0, 17.25, 17.5, 17.75])
    discharge = np.zeros((20, 6))
    discharge[:, 0] = -1.0  # all batteries discharge at full power
    rewards = []
    for t in range(96):
        _, _, _, truncated, info = env.step(discharge.ravel() if task.active[t] else np.zeros(120))
        rewards.append(info["reward_per_home"].sum())
    kpis = info["kpis"]
    assert kpis["dr_event_hours"] == pytest.approx(1.0)
    assert kpis["dr_performance"] > 0.9
    settled = int(np.flatnonzero(task.active)[-1])  # paid when the event's load is metered: its last step
    assert all(r <= 0 for t, r in enumerate(rewards) if t != settled) and rewards[settled] > 0


def _flat_load_env(baseline: str = "pjm_high_4_of_5") -> VppEnv:
    """One flat kilowatt per home every day (no PV, no other device than a battery): every baseline method
    gives a CBL of exactly 1 kW per home before its day-of adjustment."""
    from vpprl.data.profiles import H, Profiles

    rows = 96 * 42
    home = np.zeros((rows, 1, len(H)), np.float32)
    home[:, 0, H["base_load_kw"]] = 1.0
    grid = np.zeros((rows, len(G)))
    grid[:, G["price_import"]] = 0.2
    grid[:, G["outdoor_temp_c"]] = 15.0
    p = Profiles(900, home, grid, "2024-01-01", ("flat",), extra={"cyclic": True})  # 2024-01-01: a Monday
    return VppEnv(profiles=p, task={"demand_response": {"commit_kw_per_home": 0.0, "start_window_h": (17.0, 17.0),
                                                         "duration_h": 1.0, "baseline": baseline}},
                  fleet=FleetConfig(num_homes=5, seed=2, ownership=Ownership(1.0, 0, 0, 0, 0, 0),
                                    battery_reserve_soc=(0.0, 0.0), load_scale_sigma=0.0),
                  start_day=23, episode_hours=24.0)  # a Wednesday


@pytest.mark.parametrize("pre_charge", [0.0, 0.5])
def test_demand_response_pays_against_the_customer_baseline_and_its_adjustment(pre_charge):
    """Worked by hand on flat 1 kW homes: PJM's CBL is 1 kW + the Symmetric Additive Adjustment, the mean
    metered load minus 1 kW over [13:00, 16:00) (the 3 hours ending 1 hour before the 17:00 event). Batteries
    discharging p_i kW in the event are credited sum_i p_i x 1 h; charging c_i kW through the adjustment window
    raises each CBL by c_i and the credit by c_i x 1 h, while the reduction the homes really delivered (the
    counterfactual KPI) stays sum_i p_i x 1 h."""
    env = _flat_load_env()
    env.reset(seed=0)
    task = env.tasks[0]
    discharged = charged = 0.0
    for t in range(96):
        hour = t / 4
        action = np.zeros((5, 6), np.float32)
        if task.active[t]:
            action[:, 0] = -1.0
        elif 13.0 <= hour < 16.0:
            action[:, 0] = pre_charge
        _, _, _, _, info = env.step(action)
        battery_kw = env.fleet.last_outcome.device_kw[0].astype(float)
        if task.active[t]:
            discharged += float(-battery_kw.sum()) * 0.25
        elif 13.0 <= hour < 16.0:
            charged += float(battery_kw.sum()) * 0.25 / 3.0  # mean kW over the 3-hour window, summed over homes
    kpis = info["kpis"]
    assert discharged > 1.0 and (charged > 0.5) == (pre_charge > 0)
    assert kpis["dr_counterfactual_kwh"] == pytest.approx(discharged, rel=1e-4)
    assert kpis["dr_credited_kwh"] == pytest.approx(discharged + charged * 1.0, rel=1e-4)


def test_same_day_baseline_is_the_mean_load_around_the_event():
    """PJM Same Day 3 + 2 on flat homes: the mean of [13:00, 16:00) and [19:00, 21:00) (worked: 1 kW when
    the batteries are idle then), so the credit is the discharge; it is paid once 21:00 is metered."""
    env = _flat_load_env("pjm_same_day_3_2")
    env.reset(seed=0)
    task = env.tasks[0]
    discharged = 0.0
    paid_at = []
    for t in range(96):
        action = np.zeros((5, 6), np.float32)
        if task.active[t]:
            action[:, 0] = -1.0
        _, _, _, _, info = env.step(action)
        if task.active[t]:
            discharged += float(-env.fleet.last_outcome.device_kw[0].sum()) * 0.25
        if info["reward_per_home"].sum() > 1e-9:
            paid_at.append(t)
    assert paid_at == [83]  # the step 20:45-21:00 completes the post-event window
    assert info["kpis"]["dr_credited_kwh"] == pytest.approx(discharged, rel=1e-4)


def test_match_day_baseline_is_paid_at_midnight_and_not_raised_by_charging_before_the_event():
    """PJM Match Day on flat homes: every candidate day is 1 kW, so whichever three days match, the CBL is 1 kW
    (worked by hand) and the credit is the discharge, even when the batteries charge 0.5 of their power through
    13:00-16:00 (which raises PJM High 4 of 5's CBL through its adjustment); it is paid once the day is metered."""
    env = _flat_load_env("pjm_match_day")
    env.reset(seed=0)
    task = env.tasks[0]
    discharged = 0.0
    paid_at = []
    for t in range(96):
        action = np.zeros((5, 6), np.float32)
        if task.active[t]:
            action[:, 0] = -1.0
        elif 13.0 <= t / 4 < 16.0:
            action[:, 0] = 0.5
        _, _, _, _, info = env.step(action)
        if task.active[t]:
            discharged += float(-env.fleet.last_outcome.device_kw[0].sum()) * 0.25
        if info["reward_per_home"].sum() > 1e-9:
            paid_at.append(t)
    assert paid_at == [95]
    assert discharged > 1.0
    assert info["kpis"]["dr_credited_kwh"] == pytest.approx(discharged, rel=1e-4)


def test_regulation_kpis_average_onto_pjm_10_second_samples():
    """At 2-second steps the score is PJM's on 10-second averages (a second, plain averaging here) per hour;
    perfect tracking scores 1 and no response 0 precision."""
    from vpprl.data.synthetic import regulation_signal
    from vpprl.envs.regulation_score import hourly_scores

    s = regulation_signal(np.random.default_rng(0), 3600, dt_s=2.0)  # two hours
    # at 4-second steps too: on a 2-second grid, 5 values per 10 s (worked: [a, b, c] at 4 s -> 2 s a a b b c c)
    four = regulation_signal(np.random.default_rng(1), 1800, dt_s=4.0)
    fine = np.repeat(four, 2)
    ten = fine[: len(fine) // 5 * 5].reshape(-1, 5).mean(axis=1)
    assert score_series(four, 0.9 * four, 4.0)["reg_score"] == pytest.approx(
        float(np.mean(hourly_scores(ten, 0.9 * ten, 10.0).composite)), rel=1e-12)
    r = 0.8 * s + 0.1 * np.roll(s, 15)
    mine = score_series(s, r, 2.0)
    by_hand = hourly_scores(s.reshape(-1, 5).mean(axis=1), r.reshape(-1, 5).mean(axis=1), 10.0)
    assert mine["reg_score"] == pytest.approx(float(np.mean(by_hand.composite)), rel=1e-12)
    assert score_series(s, s, 2.0)["reg_score"] == pytest.approx(1.0)
    assert score_series(s, np.zeros_like(s), 2.0)["reg_precision"] == 0.0


def test_frequency_regulation_tracks_the_declared_hourly_operating_point():
    """Hour 1's point is the own-control load of the hour before the episode; hour 2's is the mean metered load of
    hour 1
    (worked from the recorded net loads); each step's error is the fleet's deviation from the point minus
    signal x capacity, and the reward splits its penalty on the homes deviating the wrong way."""
    env = env_with("frequency_regulation", n=10, devices=Ownership(1.0, 0, 0, 1.0, 1.0, 0), start_day=20,
                   dt_s=60, episode_hours=2.0)
    env.reset(seed=0)
    task = env.tasks[0]
    first_point = float(task.first_declared_kw.sum())
    nets = []
    rng = np.random.default_rng(1)
    for t in range(env.episode_steps):
        a = np.zeros((10, 6))
        a[:, 0] = rng.uniform(-1, 1, 10)
        _, reward, _, _, info = env.step(a)
        net = env.fleet.last_outcome.net_kw.astype(np.float64)
        nets.append(net.sum())
        point = first_point if t < 60 else float(np.mean(nets[:60]))
        error = net.sum() - point - task.signal[t] * task.capacity_kw
        assert info["reg_error_kw"] == pytest.approx(error, rel=1e-6, abs=1e-6)
    assert np.isfinite(info["kpis"]["reg_score"])


def _stored_by_hand(fleet, heating) -> float:
    """The terminal value's stored energy, written out home by home from the definition in
    envs/terminal.py's docstring (a second, plain implementation): battery eta_d * E, minus EV energy owed
    / eta (sessions not starting now), tank C * T, building +-C * T / 3 (+ while heating)."""
    b, ev, wh, th = fleet.battery, fleet.ev, fleet.water_heater, fleet.thermostat
    total = 0.0
    for i in range(fleet.n):
        total += float(b.energy_kwh[i]) * float(b.params.discharge_efficiency[i])
        if ev.connected[i] and not ev.arrived[i]:
            owed = max(float(ev.target_kwh[i]) - float(ev.energy_kwh[i]), 0.0)
            total -= owed / float(ev.params.efficiency[i])
        if wh.owned[i]:
            total += float(wh.heat_capacity_kwh_per_c[i]) * float(wh.temp_c[i])
        if th.owned[i]:
            sign = 1.0 if heating[i] else -1.0
            total += sign * float(th.params.capacitance_kwh_per_c[i]) * float(th.temp_c[i]) / 3.0
    return total


def test_terminal_value_is_the_stored_energy_change_valued_step_by_step():
    """The KPI equals the hand-written sum over steps of price x (stored after - stored before), each step's
    building heat signed by that step's heat-pump mode, with the episode's cheapest import price."""
    env = VppEnv(task="price_arbitrage", num_homes=10, seed=0, episode_hours=6.0, start_day=100)
    env.reset(seed=1)
    price = float(env.fleet.grid_at_steps(np.arange(env.episode_steps))[:, 2].min())  # G["price_import"] = 2
    rng = np.random.default_rng(0)
    accrued, done, info = 0.0, False, {}
    while not done:
        heating = env.fleet.thermostat.heating.copy()  # the mode of the step about to run
        before = _stored_by_hand(env.fleet, heating)
        _, _, _, done, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        accrued += price * (_stored_by_hand(env.fleet, heating) - before)
    assert price > 0 and abs(accrued) > 0.1  # random actions do move stored energy
    assert info["kpis"]["terminal_value"] == pytest.approx(accrued, rel=1e-5)


def test_a_home_left_to_drift_never_gains_terminal_value_when_the_mode_changes():
    """Thermostats off through one cold step, then a hot day: the homes warm up while their heat pumps are
    in cooling mode. Drifting away from the setpoint cannot create stored value, so the building's terminal
    value is negative. (Signed by the mode at the episode start, the warming was once booked as stored
    heat: a positive value.)"""
    from vpprl.data.profiles import G, H, Profiles

    rows = 96 * 2
    grid = np.zeros((rows, len(G)))
    grid[:, G["outdoor_temp_c"]] = 38.0
    grid[0, G["outdoor_temp_c"]] = 0.0  # heating mode in the first step only
    grid[:, G["price_import"]] = 0.2
    p = Profiles(900, np.zeros((rows, 1, len(H)), np.float32), grid, "2024-01-01", ("const",),
                 extra={"cyclic": True})
    env = VppEnv(profiles=p, task="price_arbitrage", fleet=FleetConfig(num_homes=20, seed=0, ownership=Ownership(
        0, 0, 0, 0, 1.0, 0)), episode_hours=24.0, start_day=0)
    env.reset(seed=0)
    env.fleet.reveal()  # the mode of the step as the physics runs it
    assert env.fleet.thermostat.heating.all()
    off = np.zeros((20, 6), np.float32)
    off[:, 4] = -1.0  # heat pumps off
    info = {}
    for _ in range(env.episode_steps):
        _, _, _, _, info = env.step(off)
    assert not env.fleet.thermostat.heating.any()
    assert info["kpis"]["terminal_value"] < 0.0


def test_demand_response_counterfactual_kpi_is_the_batteries_beside_thermal_devices():
    """Batteries discharge during the event while water heaters and heat pumps run under their own control
    (drawing power): the counterfactual reduction KPI (own-control load minus metered load) is exactly the
    batteries' discharge, read from their delivered power (the thermal devices' own consumption cancels)."""
    env = env_with({"demand_response": {"commit_kw_per_home": 0.0, "start_window_h": (17.0, 17.0),
                                        "duration_h": 1.0, "credit_per_kwh": 0.5}},
                   devices=Ownership(1.0, 0, 0, 1.0, 1.0, 0), start_day=30)
    env.reset(seed=0)
    task = env.tasks[0]
    discharge = np.zeros((20, 6))
    discharge[:, 0] = -1.0
    thermal_kw = battery_kwh = 0.0
    for t in range(96):
        _, _, _, _, info = env.step(discharge if task.active[t] else np.zeros((20, 6)))
        if task.active[t]:
            dev = env.fleet.last_outcome.device_kw
            thermal_kw += float(np.abs(dev[3:5]).sum())
            battery_kwh += float(-dev[0].sum()) * 0.25
    assert thermal_kw > 1.0
    assert info["kpis"]["dr_counterfactual_kwh"] == pytest.approx(battery_kwh, rel=1e-4)


@pytest.mark.parametrize(("params", "message"), [
    ({"start_window_h": (2.0, 3.0)}, r"start_window_h must start at >= 4 h with baseline=pjm_high_4_of_5"),
    ({"start_window_h": (22.0, 23.0), "duration_h": 2.0}, r"an event must end by midnight"),
    ({"baseline": "pjm_same_day_3_2", "start_window_h": (19.0, 20.0)}, r"must end by 21:00"),
    ({"weekdays_only": False}, r"only pjm_same_day_3_2 supports weekend events"),
    ({"baseline": "pjm_matchday"}, r"DemandResponse.baseline must be one of"),
])
def test_demand_response_settings_the_baselines_cannot_settle_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        env_with({"demand_response": params})


def test_an_event_that_cannot_be_settled_within_the_episode_is_not_called():
    """Same Day 3 + 2 reads the 3 h after an event: an episode ending at 20:00 cannot settle a 16:00-18:00 event,
    so none is called (and the oracle does not plan on one)."""
    env = env_with({"demand_response": {"baseline": "pjm_same_day_3_2", "start_window_h": (16.0, 16.0)}},
                   devices=Ownership(1.0, 0, 0, 0, 0, 0), start_day=2, episode_hours=20.0)
    env.reset(seed=0)
    assert not env.tasks[0].active.any() and env.tasks[0].events == []
    env = env_with({"demand_response": {"baseline": "pjm_same_day_3_2", "start_window_h": (16.0, 16.0)}},
                   devices=Ownership(1.0, 0, 0, 0, 0, 0), start_day=2, episode_hours=24.0)
    env.reset(seed=0)
    assert env.tasks[0].active.sum() == 8  # 2 h of 15-minute steps
