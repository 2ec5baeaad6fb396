"""Fleet simulator: energy balance, determinism, shared profiles, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vpprl.data.default_scenario import default_profiles
from vpprl.envs import Fleet, FleetConfig, ScenarioConfig, VppEnv, build_fleet
from vpprl.envs.forecast import Forecaster, ForecastConfig
from vpprl.envs.fleet import BATTERY, EV, NUM_DEVICE_CLASSES, PV
from vpprl.envs.fleet_config import Ownership

ALL_ON = Ownership(battery=1.0, ev=1.0, pv=1.0, water_heater=1.0, thermostat=1.0, flex_load=0.2)


def make_fleet(n=200, seed=0, dt_s=900) -> Fleet:
    p = default_profiles()
    fleet = Fleet(p, build_fleet(FleetConfig(num_homes=n, seed=seed, ownership=ALL_ON), p), dt_s)
    fleet.reset(np.random.default_rng(seed), start_s=190 * 86400)
    return fleet


def test_metered_net_load_is_the_power_the_devices_states_imply():
    """The net load reported per home equals base load plus each device's power *reconstructed from its own
    state change* with the physical models written out here: battery dE = eta_c P dt (charging) or P dt /
    eta_d; EV dE likewise for sessions that continue; the home's RC model T' = aT + (1-a)(T_out + R Q_gain +
    R COP P) solved for P; PV between -available and 0. Homes with a water heater or a C&I load are left
    out (their models are checked in test_devices.py)."""
    from vpprl.data.profiles import G
    from vpprl.envs.devices.thermostat import cop_cooling, cop_heating
    from vpprl.envs.fleet import THERMOSTAT

    p = default_profiles()
    own = Ownership(battery=1.0, ev=1.0, pv=1.0, water_heater=0.0, thermostat=1.0, flex_load=0.0)
    # perfect foresight: the inputs read before the step are the ones the physics runs on
    fleet = Fleet(p, build_fleet(FleetConfig(num_homes=200, seed=0, ownership=own), p), 900,
                  Forecaster(ForecastConfig.perfect()))
    fleet.reset(np.random.default_rng(3), start_s=30 * 86400)  # January: heating
    rng = np.random.default_rng(3)
    lay, dt = fleet.layout, 0.25
    checked = 0
    for _ in range(96):
        e_b = fleet.battery.energy_kwh.astype(np.float64).copy()
        e_ev, was = fleet.ev.energy_kwh.astype(np.float64).copy(), fleet.ev.connected.copy()
        temp = fleet.thermostat.temp_c.astype(np.float64).copy()
        base = fleet.base_load_kw.astype(np.float64).copy()
        pv_avail = fleet.pv.available_kw.astype(np.float64).copy()
        t_out, ghi = float(fleet.grid[G["outdoor_temp_c"]]), float(fleet.grid[G["ghi_w_m2"]])
        out = fleet.apply(fleet.setpoints_from_action(rng.uniform(-1, 1, fleet.n * NUM_DEVICE_CLASSES)))
        # battery
        d_b = fleet.battery.energy_kwh - e_b
        p_b = np.where(d_b > 0, d_b / (lay.battery.charge_efficiency * dt), d_b * lay.battery.discharge_efficiency / dt)
        # EV: sessions plugged in before and after the step (no arrival or departure in between)
        keep = was & fleet.ev.connected & ~fleet.ev.arrived
        d_ev = fleet.ev.energy_kwh - e_ev
        p_ev = np.where(d_ev > 0, d_ev / (lay.ev.efficiency * dt), d_ev * lay.ev.efficiency / dt)
        p_ev = np.where(keep, p_ev, 0.0)  # unplugged during the step: no EV power (an arrival after it resets E)
        # heat pump from the RC model
        tp = lay.thermostat
        a = np.exp(-dt / (tp.resistance_c_per_kw * tp.capacitance_kwh_per_c))
        gains = tp.internal_gain_kw + tp.solar_aperture_m2 * ghi / 1000.0
        heating = t_out < tp.balance_temp_c
        cop = np.where(heating, cop_heating(t_out), -cop_cooling(t_out))
        free = a * temp + (1 - a) * (t_out + tp.resistance_c_per_kw * gains)
        p_hp = (fleet.thermostat.temp_c - free) / ((1 - a) * tp.resistance_c_per_kw * cop)
        p_pv = out.device_kw[PV].astype(np.float64)
        assert np.all((p_pv >= -pv_avail - 1e-4) & (p_pv <= 1e-6))
        expected = base + p_b + p_ev + np.where(tp.heat_pump_kw > 0, p_hp, 0.0) + p_pv
        np.testing.assert_allclose(out.net_kw[keep | ~was], expected[keep | ~was], atol=2e-3)
        np.testing.assert_allclose(out.device_kw[THERMOSTAT], np.where(tp.heat_pump_kw > 0, p_hp, 0), atol=2e-3)
        checked += int((keep | ~was).sum())
    assert checked > 96 * 150


def test_profiles_are_shared_not_copied():
    p = default_profiles()
    fleet = make_fleet(n=1000)
    assert np.shares_memory(fleet._table, p.home)
    per_home_bytes = sum(a.nbytes for a in vars(fleet.battery).values() if isinstance(a, np.ndarray)) / 1000
    assert per_home_bytes < 200  # per-home state is O(1), independent of the number of timesteps


def test_fleet_builder_is_seeded_and_respects_ownership():
    p = default_profiles()
    cfg = FleetConfig(num_homes=5000, seed=7)
    a, b = build_fleet(cfg, p), build_fleet(cfg, p)
    np.testing.assert_array_equal(a.battery.capacity_kwh, b.battery.capacity_kwh)
    np.testing.assert_array_equal(a.shift_s, b.shift_s)
    c = build_fleet(FleetConfig(num_homes=5000, seed=8), p)
    assert not np.array_equal(a.battery.capacity_kwh, c.battery.capacity_kwh)
    assert abs((a.battery.capacity_kwh > 0).mean() - cfg.ownership.battery) < 0.03
    assert abs(a.vulnerable.mean() - cfg.vulnerable_fraction) < 0.02
    vul = a.vulnerable & (a.thermostat.heat_pump_kw > 0)
    width = a.thermostat.comfort_high_c - a.thermostat.comfort_low_c
    assert np.all(width[vul] < width[~a.vulnerable].min())  # tighter band for vulnerable homes


@pytest.mark.parametrize("field,value,match", [
    ("num_homes", 0, r"FleetConfig.num_homes must be an integer in \[1, 1000000\]"),
    ("v2g_fraction", 1.5, r"FleetConfig.v2g_fraction must be in \[0.0, 1.0\]"),
    ("battery_kwh", (15.0, 5.0), r"FleetConfig.battery_kwh must be \(low, high\)"),
    ("ownership", {"battery": 2.0}, r"FleetConfig.ownership.battery must be in \[0, 1\]"),
    ("ev_charger_kw", (), r"FleetConfig.ev_charger_kw must be a non-empty list"),
])
def test_invalid_fleet_config_names_field_and_range(field, value, match):
    with pytest.raises(ValueError, match=match):
        FleetConfig(**{field: value})


@pytest.mark.parametrize("kwargs,match", [
    ({"dt_s": 0}, r"ScenarioConfig.dt_s must be an integer in \[1, 86400\]"),
    ({"episode_hours": -1.0}, r"ScenarioConfig.episode_hours must be in"),
    ({"tasks": {"peak_shaving": {"limit_kw_per_home": -1}}}, r"PeakShaving.limit_kw_per_home must be in \[0.001, 1000.0\]"),
    ({"tasks": {"solar_farming": {}}}, r"unknown task 'solar_farming'"),
    ({"cost_weights": {"ev_unmet_kwh": -1.0}}, r"CostWeights.ev_unmet_kwh must be in \[0, 10000\]"),
])
def test_invalid_scenario_fails_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VppEnv(ScenarioConfig(fleet=FleetConfig(num_homes=5), **kwargs))


def test_bad_actions_are_sanitised_and_counted_not_propagated():
    a, b = make_fleet(n=50), make_fleet(n=50)
    zero = np.zeros(50 * NUM_DEVICE_CLASSES)
    bad = zero.copy()
    bad[::7] = np.nan
    bad[1::11] = np.inf
    out_a = a.apply(a.setpoints_from_action(zero))
    out_b = b.apply(b.setpoints_from_action(bad))
    np.testing.assert_array_equal(out_a.net_kw, out_b.net_kw)  # non-finite entries act as 0 (device default)
    assert b.action_stats.nonfinite == int((~np.isfinite(bad)).sum())
    huge = np.full(50 * NUM_DEVICE_CLASSES, 1e30)
    b.apply(b.setpoints_from_action(huge))
    assert b.action_stats.clipped == huge.size
    with pytest.raises(ValueError, match=r"action must have shape \(300,\) or \(50, 6\)"):
        b.setpoints_from_action(np.zeros(7))


def test_infeasible_setpoints_are_clamped_and_reported():
    fleet = make_fleet(n=20)
    sp = np.full((NUM_DEVICE_CLASSES, 20), 1e6)
    out = fleet.apply(sp)
    assert out.costs["power_limit_kwh"].min() > 0
    assert np.all(fleet.battery.energy_kwh <= fleet.battery.energy_max_kwh + 1e-4)
    with pytest.raises(ValueError, match=r"setpoints_kw must have shape \(D, N\) = \(6, 20\)"):
        fleet.apply(np.zeros((20, 6)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 10.0, 1e12]),
       special=st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
def test_state_stays_physical_for_any_action(seed, scale, special):
    """Whatever the policy outputs, device states stay within their physical limits."""
    fleet = make_fleet(n=30, seed=seed % 5)
    rng = np.random.default_rng(seed)
    for _ in range(48):
        a = rng.normal(0, scale, 30 * NUM_DEVICE_CLASSES)
        a[rng.random(a.size) < 0.1] = special
        fleet.apply(fleet.setpoints_from_action(a))
        b, ev, wh = fleet.battery, fleet.ev, fleet.water_heater
        assert np.all(b.energy_kwh >= b.energy_min_kwh - 1e-3) and np.all(b.energy_kwh <= b.energy_max_kwh + 1e-3)
        conn = ev.connected
        assert np.all(ev.energy_kwh[conn] <= ev.capacity_kwh[conn] + 1e-3)
        assert np.all(ev.energy_kwh[conn] >= np.minimum(ev.v2g_floor_kwh, ev.energy_kwh)[conn] - 1e-3)
        assert np.all(wh.temp_c <= wh.params.max_temp_c + 1e-3)
        for arr in (fleet.net_kw, fleet.thermostat.temp_c, wh.temp_c, fleet.flex.backlog_kwh):
            assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("dt_s", [2, 60, 900, 3600])
def test_any_resolution_gives_the_same_energy(dt_s):
    """Uncontrolled base load over three hours does not depend on the step length: finer steps hold
    each 15-min value (zero-order hold), coarser steps average it, and home time shifts (whole days
    plus whole-hour jitter here) map to the same hours at every resolution."""
    p = default_profiles()
    cfg = FleetConfig(num_homes=10, seed=0, ownership=Ownership(0, 0, 0, 0, 0, 0), time_jitter_minutes=60.0)
    layout = build_fleet(cfg, p)
    layout.shift_s -= layout.shift_s % 3600  # whole hours, representable at every resolution tested

    def kwh(step_s: int) -> float:
        fleet = Fleet(p, layout, step_s)
        fleet.reset(np.random.default_rng(0), start_s=20 * 86400)
        zero = np.zeros((NUM_DEVICE_CLASSES, 10))
        return sum(float(fleet.apply(zero).net_kw.sum()) for _ in range(3 * 3600 // step_s)) * step_s / 3600

    assert kwh(dt_s) == pytest.approx(kwh(900), rel=1e-5)
