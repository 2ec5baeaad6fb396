"""Grid-service tasks: rewards on hand-checkable cases, event schedules, the regulation score."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.data.profiles import G
from vpprl.envs import VppEnv
from vpprl.envs.fleet_config import FleetConfig, Ownership
from vpprl.envs.tasks import performance_score, split_by_weight

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
    assert kpis["dr_performance"] > 0.9  # batteries deliver 0.2 kW/home against the own-control baseline
    assert all(r == 0 for t, r in enumerate(rewards) if not task.active[t])
    assert all(r > 0 for t, r in enumerate(rewards) if task.active[t])


def test_regulation_score_perfect_delayed_and_absent_response():
    rng = np.random.default_rng(0)
    from vpprl.data.synthetic import regulation_signal

    s = regulation_signal(rng, 1800, dt_s=2.0)
    perfect = performance_score(s, s, dt_s=2.0)
    assert perfect["reg_accuracy"] == pytest.approx(1.0) and perfect["reg_precision"] == pytest.approx(1.0)
    assert perfect["reg_score"] == pytest.approx(1.0)
    late = performance_score(s, np.r_[np.zeros(30), s[:-30]], dt_s=2.0)  # 60 s late
    assert late["reg_delay"] == pytest.approx(0.8, abs=1e-9) and late["reg_score"] < perfect["reg_score"]
    none = performance_score(s, np.zeros_like(s), dt_s=2.0)
    assert none["reg_accuracy"] == 0.0 and none["reg_precision"] == 0.0


def test_frequency_regulation_env_rewards_tracking():
    # water heaters and heat pumps run under their own control (non-zero power) beside the tracking batteries
    env = env_with("frequency_regulation", n=30, devices=Ownership(1.0, 0, 0, 1.0, 1.0, 0), start_day=20)
    assert env.config.dt_s == 4 and env.episode_steps == 900
    env.reset(seed=0)
    task = env.tasks[0]
    cap = env.fleet.layout.battery.max_charge_kw
    info, thermal_kw = {}, 0.0
    for t in range(env.episode_steps):
        # batteries follow the signal: target deviation = signal * capacity, shared by rated power
        want = task.signal[t] * task.capacity_kw * cap / cap.sum()
        a = np.zeros((30, 6))
        a[:, 0] = np.clip(want / np.maximum(cap, 1e-9), -1, 1)  # thermal devices: 0 = their own control
        _, _, _, truncated, info = env.step(a.ravel())
        thermal_kw += float(np.abs(env.fleet.last_outcome.device_kw[3:5]).sum())
    assert thermal_kw > 0  # the thermal devices did draw power, so the baseline had to account for them
    assert truncated and info["kpis"]["reg_score"] > 0.9


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


def test_demand_response_credits_exactly_the_batteries_beside_thermal_devices():
    """Batteries discharge during the event while water heaters and heat pumps run under their own control
    (drawing power): each home's reward is credit x its battery's discharge x dt minus the battery's wear, read
    from the battery's delivered power (the thermal devices' own consumption is in the baseline and must
    cancel)."""
    env = env_with({"demand_response": {"commit_kw_per_home": 0.0, "start_window_h": (17.0, 17.0),
                                        "duration_h": 1.0, "credit_per_kwh": 0.5}},
                   devices=Ownership(1.0, 0, 0, 1.0, 1.0, 0), start_day=30)
    env.reset(seed=0)
    task = env.tasks[0]
    discharge = np.zeros((20, 6))
    discharge[:, 0] = -1.0
    thermal_kw = 0.0
    for t in range(96):
        _, _, _, _, info = env.step(discharge if task.active[t] else np.zeros((20, 6)))
        if task.active[t]:
            dev = env.fleet.last_outcome.device_kw
            thermal_kw += float(np.abs(dev[3:5]).sum())
            wear = env.fleet.layout.battery.degradation_cost_per_kwh * np.abs(dev[0]) * 0.25  # 2 c/kWh cycled
            np.testing.assert_allclose(info["reward_per_home"], 0.5 * -dev[0] * 0.25 - wear, rtol=1e-4, atol=1e-6)
    assert thermal_kw > 1.0
