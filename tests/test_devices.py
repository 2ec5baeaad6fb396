"""Device physics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vpprl.envs.devices import (
    Battery,
    BatteryCurves,
    BatteryParams,
    EvCharger,
    EvChargerParams,
    FlexLoad,
    FlexLoadParams,
    Solar,
    Thermostat,
    ThermostatParams,
    WaterHeater,
    WaterHeaterParams,
    cop_cooling,
    cop_heating,
    inverse_map_action,
    map_action,
)


def arr(*v):
    return np.array(v, dtype=np.float64)


def battery(cap=10.0, p=5.0, eta=0.95, reserve=0.2, dt_h=1.0):
    params = BatteryParams(arr(cap), arr(p), arr(p), arr(eta), arr(eta), arr(0.05), arr(0.95), arr(reserve), arr(0.02))
    return Battery(params, dt_h)


def citylearn_battery(energy, loss_per_h=0.0, fade=0.0, dt_h=1.0):
    """A 6.4 kWh / 5 kW battery with CityLearn's 2021-schema curves (as the 2022 homes carry)."""
    one = lambda v: np.array([v], dtype=np.float64)
    curves = BatteryCurves(nominal_kw=one(5.0), power_soc=arr(0.0, 0.8, 1.0)[None], power_frac=arr(1.0, 1.0, 0.2)[None],
                           efficiency_power=arr(0, 0.3, 0.7, 0.8, 1)[None],
                           efficiency=arr(0.83, 0.83, 0.9, 0.9, 0.85)[None],
                           standby_loss_per_h=one(loss_per_h), capacity_loss_coefficient=one(fade))
    params = BatteryParams(one(6.4), one(5.0), one(5.0), one(0.9 ** 0.5), one(0.9 ** 0.5), one(0.0), one(1.0),
                           one(0.0), one(0.0), curves=curves)
    b = Battery(params, dt_h)
    b.energy_kwh = one(energy)
    b.prepare()
    return b


class TestCityLearnBattery:
    """CityLearn's battery model, worked by hand from its Battery.charge (citylearn 3.0.2 energy_model.py)."""

    def test_full_power_from_empty_uses_the_efficiency_at_rated_power(self):
        b = citylearn_battery(0.0)
        assert b.step(arr(5.0))[0] == pytest.approx(5.0)
        assert b.energy_kwh[0] == pytest.approx(5.0 * math.sqrt(0.85))  # eff(1.0) = 0.85, sqrt each way

    def test_power_falls_with_soc_near_full(self):
        b = citylearn_battery(6.4)  # SoC 1: capacity-power curve gives 0.2 x 5 kW
        assert b.step(arr(-5.0))[0] == pytest.approx(-1.0)
        assert b.energy_kwh[0] == pytest.approx(6.4 - 1.0 / math.sqrt(0.83))  # eff(0.2) = 0.83

    def test_room_to_full_found_by_two_fixed_point_iterations(self):
        # SoC 0.9375: limit 5 x (1 - 0.1375/0.2 x 0.8) = 2.25 kW; eff(0.45) = 0.85625 -> room 0.4 kWh gives
        # 0.432274 kW; eff(0.0864548) = 0.83 -> 0.4 / sqrt(0.83) = 0.439057 kW, applied at sqrt(0.83): full
        b = citylearn_battery(6.0)
        assert b.p_max[0] == pytest.approx(0.4 / math.sqrt(0.83), rel=1e-6)
        assert b.step(arr(5.0))[0] == pytest.approx(0.4 / math.sqrt(0.83), rel=1e-6)
        assert b.energy_kwh[0] == pytest.approx(6.4)

    def test_standby_loss_and_capacity_fade(self):
        b = citylearn_battery(3.2, loss_per_h=0.01, dt_h=0.25)
        b.step(arr(0.0))
        assert b.energy_kwh[0] == pytest.approx(3.2 * (1 - 0.01 * 0.25))
        b = citylearn_battery(0.0, fade=1e-3)
        b.step(arr(5.0))  # 5 kWh AC through: capacity loses 1e-3 x 6.4 x 5 / (2 x 6.4) = 2.5e-3 kWh
        assert b.degraded_capacity_kwh[0] == pytest.approx(6.4 - 2.5e-3)


class TestBattery:
    def test_charge_applies_charge_efficiency(self):
        b = battery()
        b.energy_kwh = arr(2.0)
        b.prepare()
        assert b.step(arr(4.0))[0] == pytest.approx(4.0)
        assert b.energy_kwh[0] == pytest.approx(2.0 + 4.0 * 0.95)

    def test_discharge_divides_by_efficiency(self):
        b = battery()
        b.energy_kwh = arr(8.0)
        b.prepare()
        b.step(arr(-3.0))
        assert b.energy_kwh[0] == pytest.approx(8.0 - 3.0 / 0.95)

    def test_feasible_interval_respects_soc_limits_over_the_step(self):
        b = battery(dt_h=0.5)
        b.energy_kwh = arr(9.0)  # 0.5 kWh below soc_max (9.5 kWh)
        b.prepare()
        p_min, p_max = b.feasible_power()
        assert p_max[0] == pytest.approx(0.5 / (0.95 * 0.5))  # room / (eta * dt)
        assert p_min[0] == pytest.approx(-5.0)  # plenty of energy above soc_min: rated limit
        b.step(arr(100.0))  # physics clamps a wild request
        assert b.energy_kwh[0] == pytest.approx(9.5)

    def test_never_below_hard_minimum_and_reserve_shortfall_is_reported(self):
        b = battery()
        b.energy_kwh = arr(1.0)
        b.prepare()
        b.step(arr(-5.0))
        assert b.energy_kwh[0] == pytest.approx(0.5)  # soc_min * capacity
        assert b.reserve_shortfall_kwh()[0] == pytest.approx(2.0 - 0.5)

    def test_reserve_as_floor(self):
        b = battery()
        b.energy_kwh = arr(3.0)
        p_min, _ = b.feasible_power_with_floor(b.reserve_kwh)
        assert p_min[0] == pytest.approx(-(3.0 - 2.0) * 0.95)


def ev_charger(p=7.0, v2g=7.0, eta=0.9, dt_h=1.0):
    return EvCharger(EvChargerParams(arr(p), arr(v2g), arr(eta), arr(0.3)), dt_h)


class TestEvCharger:
    def test_session_lifecycle_and_unmet_energy(self):
        ev = ev_charger()
        ev.reset(np.random.default_rng(0))
        on = np.array([True])
        unmet, departed = ev.update_sessions(on, arr(10.0), arr(60.0), arr(0.5), arr(0.8))
        assert not departed.any() and unmet[0] == 0
        assert ev.energy_kwh[0] == pytest.approx(30.0) and ev.target_kwh[0] == pytest.approx(48.0)
        ev.prepare()
        assert ev.energy_needed_kwh[0] == pytest.approx(18.0)
        assert ev.p_default[0] == pytest.approx(7.0)  # charge-on-arrival at full power
        ev.step(arr(7.0))
        assert ev.energy_kwh[0] == pytest.approx(30.0 + 7.0 * 0.9)
        unmet, departed = ev.update_sessions(np.array([False]), arr(0.0), arr(0.0), arr(0.0), arr(0.0))
        assert departed[0] and unmet[0] == pytest.approx(48.0 - 36.3)

    def test_default_power_stops_at_target(self):
        ev = ev_charger()
        ev.update_sessions(np.array([True]), arr(5.0), arr(60.0), arr(0.79), arr(0.8))
        ev.prepare()
        assert ev.p_default[0] == pytest.approx(0.6 / 0.9)  # 0.6 kWh needed, through 90% efficiency

    def test_v2g_floor_and_unplugged_is_zero(self):
        ev = ev_charger()
        ev.update_sessions(np.array([True]), arr(5.0), arr(50.0), arr(0.32), arr(0.8))
        ev.prepare()
        assert ev.p_min[0] == pytest.approx(-(0.32 - 0.3) * 50.0 * 0.9)
        ev.update_sessions(np.array([False]), arr(0.0), arr(0.0), arr(0.0), arr(0.0))
        ev.prepare()
        assert ev.p_min[0] == 0 and ev.p_max[0] == 0 and ev.p_default[0] == 0


def thermostat(dt_h=0.25, r=3.0, c=8.0, p=4.0):
    params = ThermostatParams(arr(r), arr(c), arr(p), arr(20.0), arr(24.0), arr(2.0), arr(0.4), arr(18.0))
    return Thermostat(params, dt_h)


class TestThermostat:
    def test_cop_reference_points(self):
        assert cop_heating(7.0) == pytest.approx(3.0) and cop_heating(-50.0) == 1.5
        assert cop_cooling(27.0) == pytest.approx(4.0) and cop_cooling(35.0) == pytest.approx(3.36)

    def test_free_running_rc_step_matches_closed_form(self):
        th = thermostat()
        th.temp_c = arr(21.0)
        th.update(outdoor_c=0.0, ghi_w_m2=500.0)
        a = math.exp(-0.25 / (3.0 * 8.0))
        gain_kw = 0.4 + 2.0 * 500.0 / 1000.0
        expected = a * 21.0 + (1 - a) * (0.0 + 3.0 * gain_kw)
        assert th.free_temp_c[0] == pytest.approx(expected)
        assert th.heating[0]
        th.prepare()
        th.step(arr(0.0))
        assert th.temp_c[0] == pytest.approx(expected)

    def test_heating_power_raises_temperature_by_cop(self):
        th = thermostat()
        th.temp_c = arr(21.0)
        th.update(outdoor_c=7.0, ghi_w_m2=0.0)
        free = th.free_temp_c[0]
        th.prepare()
        th.step(arr(2.0))
        a = math.exp(-0.25 / 24.0)
        assert th.temp_c[0] == pytest.approx(free + (1 - a) * 3.0 * 3.0 * 2.0)  # (1-a) R COP P

    def test_cooling_mode_in_summer_and_default_hits_setpoint(self):
        th = thermostat()
        th.temp_c = arr(22.2)
        th.update(outdoor_c=35.0, ghi_w_m2=800.0)
        assert not th.heating[0] and th.gain_c_per_kw[0] < 0
        th.prepare()
        assert 0 < th.p_default[0] < 4.0
        th.step(th.p_default)
        assert th.temp_c[0] == pytest.approx(22.0)  # band mid-point, reachable within one step

    def test_default_saturates_when_setpoint_unreachable(self):
        th = thermostat()
        th.temp_c = arr(24.5)  # tau = 24 h: 4 kW moves the home only ~0.4 degC in 15 min
        th.update(outdoor_c=35.0, ghi_w_m2=800.0)
        th.prepare()
        assert th.p_default[0] == pytest.approx(4.0)

    def test_mode_is_seasonal(self):
        th = thermostat()
        th.temp_c = arr(30.0)  # hot inside, but 10 degC outside: still heating season
        th.update(outdoor_c=10.0, ghi_w_m2=0.0)
        assert th.heating[0] and th.gain_c_per_kw[0] > 0
        th.prepare()
        assert th.p_default[0] == 0.0  # above setpoint in heating mode: the heat pump stays off
        th.update(outdoor_c=19.0, ghi_w_m2=0.0)
        assert not th.heating[0] and th.gain_c_per_kw[0] < 0

    def test_discomfort_degrees_outside_band(self):
        th = thermostat()
        th.temp_c = arr(18.5)
        assert th.discomfort_c()[0] == pytest.approx(1.5)
        th.temp_c = arr(25.0)
        assert th.discomfort_c()[0] == pytest.approx(1.0)


def water_heater(dt_h=1.0):
    params = WaterHeaterParams(arr(200.0), arr(4.5), arr(45.0), arr(65.0), arr(52.0), arr(75.0), arr(0.0025),
                               arr(12.0), arr(20.0))
    return WaterHeater(params, dt_h)


class TestWaterHeater:
    def test_draw_mixes_with_inlet_water_then_element_heats(self):
        wh = water_heater()
        wh.temp_c = arr(52.0)
        wh.update(arr(50.0))
        t1 = 52.0 - 0.25 * (52.0 - 12.0)
        c = 200.0 * 4.186 / 3600.0
        free = t1 - 0.0025 * (t1 - 20.0) / c
        assert wh.free_temp_c[0] == pytest.approx(free)
        wh.prepare()
        wh.step(arr(4.5))
        assert wh.temp_c[0] == pytest.approx(free + 4.5 / c)

    def test_high_limit_cutoff(self):
        wh = water_heater()
        wh.temp_c = arr(74.0)
        wh.update(arr(0.0))
        wh.prepare()
        wh.step(arr(4.5))
        assert wh.temp_c[0] == pytest.approx(75.0)

    def test_discomfort_when_too_cold(self):
        wh = water_heater()
        wh.temp_c = arr(40.0)
        assert wh.discomfort_c()[0] == pytest.approx(5.0)


class TestFlexLoad:
    def test_curtail_then_rebound_then_settle(self):
        fl = FlexLoad(FlexLoadParams(arr(100.0), arr(0.3), arr(30.0), arr(120.0)), dt_h=1.0)
        fl.update(arr(1.0))
        fl.prepare()
        assert fl.p_min[0] == pytest.approx(70.0) and fl.p_default[0] == pytest.approx(100.0)
        fl.step(arr(70.0))
        assert fl.backlog_kwh[0] == pytest.approx(30.0)
        fl.prepare()
        assert fl.p_default[0] == pytest.approx(130.0)  # rebound repays the backlog by default
        fl.step(arr(110.0))
        assert fl.settle_window()[0] == pytest.approx(20.0)
        assert fl.backlog_kwh[0] == 0.0

    def test_energy_consumed_ahead_is_used_up_by_own_control(self):
        """100 kW baseline, 30 % curtailable, 30 kW rebound, 120 kWh bank, 1-h steps: 30 kWh consumed ahead,
        then own control draws 70 kW (the floor) and 100 kW once the bank is empty; nothing is left to waste at
        the window's end."""
        fl = FlexLoad(FlexLoadParams(arr(100.0), arr(0.3), arr(30.0), arr(120.0)), dt_h=1.0)
        fl.update(arr(1.0))
        fl.prepare()
        fl.step(arr(130.0))
        assert fl.backlog_kwh[0] == pytest.approx(-30.0)
        fl.prepare()
        assert fl.p_default[0] == pytest.approx(70.0)  # -30 kWh over 1 h, at the curtailment floor
        fl.step(fl.p_default)
        fl.prepare()
        assert fl.p_default[0] == pytest.approx(100.0)
        fl.step(arr(120.0))  # 20 kWh ahead
        fl.prepare()
        assert fl.p_default[0] == pytest.approx(80.0)
        fl.step(fl.p_default)
        assert fl.settle_window()[0] == pytest.approx(0.0) and fl.backlog_kwh[0] == 0.0


class TestSolarAndActionMap:
    def test_solar_curtailment(self):
        pv = Solar(arr(5.0), dt_h=1.0)
        pv.update(arr(0.8))
        pv.prepare()
        lo, de, hi = pv.action_range()
        assert (lo[0], de[0], hi[0]) == (-4.0, -4.0, 0.0)
        assert pv.step(arr(-10.0))[0] == -4.0 and pv.step(arr(3.0))[0] == 0.0

    def test_map_action_is_piecewise_linear_and_invertible(self):
        lo, de, hi = arr(-5.0, -5.0, 0.0), arr(1.0, 1.0, 0.0), arr(5.0, 5.0, 0.0)
        a = arr(-1.0, 0.5, 0.7)
        p = map_action(a, lo, de, hi)
        assert p.tolist() == [-5.0, 3.0, 0.0]
        assert inverse_map_action(p, lo, de, hi)[:2].tolist() == [-1.0, 0.5]


def test_session_in_progress_at_episode_start_stays_feasible():
    ev = ev_charger(p=7.0, eta=0.9)
    ev.reset(np.random.default_rng(0))
    # the profile says: plugged in, 2 h to go, arrived at 10 % SoC wanting 80 % of 60 kWh
    ev.update_sessions(np.array([True]), arr(2.0), arr(60.0), arr(0.1), arr(0.8), episode_start=True)
    assert ev.energy_kwh[0] == pytest.approx(0.8 * 60.0 - 7.0 * 0.9 * 2.0)  # reachable at full power
    fresh = ev_charger(p=7.0, eta=0.9)
    fresh.update_sessions(np.array([True]), arr(2.0), arr(60.0), arr(0.1), arr(0.8))
    assert fresh.energy_kwh[0] == pytest.approx(6.0)  # a real arrival keeps its SoC
