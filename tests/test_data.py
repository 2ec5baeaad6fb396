"""Data layer: the CityLearn loader on the real dataset, the default scenario, resampling, generators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from vpprl.data import synthetic
from vpprl.data.citylearn import load_citylearn
from vpprl.data.default_scenario import ANNUAL_BASE_LOAD_KWH, default_profiles
from vpprl.data.profiles import H, Profiles, for_resolution


class TestCityLearnLoader:
    def test_shapes_and_building_specs(self, citylearn_dataset):
        p = citylearn_dataset.profiles
        assert p.num_profiles == 17 and p.num_rows == 8760 and p.dt_s == 3600
        b1 = citylearn_dataset.buildings[0]
        assert (b1.name, b1.battery_kwh, b1.battery_kw, b1.pv_kwp, b1.charger_kw) == ("Building_1", 6.4, 5.0, 12.0, 11.0)
        assert sum(b.charger_kw > 0 for b in citylearn_dataset.buildings) == 7

    def test_values_match_the_csv(self, citylearn_dir, citylearn_dataset):
        raw = pd.read_csv(citylearn_dir / "Building_5.csv.gz")
        k = citylearn_dataset.profiles.names.index("Building_5")
        base = citylearn_dataset.profiles.home_channel("base_load_kw")[k]
        np.testing.assert_allclose(base, raw["non_shiftable_load"].to_numpy(), rtol=1e-6)
        pv = citylearn_dataset.profiles.home_channel("pv_kw_per_kwp")[k]
        np.testing.assert_allclose(pv, raw["solar_generation"].to_numpy() / 1000.0, rtol=1e-6)
        assert 0.0 <= pv.min() and pv.max() <= 1.0

    def test_ev_sessions_follow_charger_state(self, citylearn_dir, citylearn_dataset):
        raw = pd.read_csv(citylearn_dir / "charger_1_1.csv.gz")
        connected = raw["electric_vehicle_charger_state"].to_numpy()[:8760] == 1  # file is longer than a year
        k = citylearn_dataset.profiles.names.index("Building_1")
        ch = citylearn_dataset.profiles.home_channel("ev_connected")[k]
        np.testing.assert_array_equal(ch > 0.5, connected)
        # hours to departure counts down to 1 h at the last connected row of each session
        hours = citylearn_dataset.profiles.home_channel("ev_hours_to_departure")[k]
        last = np.flatnonzero(connected[:-1] & ~connected[1:])  # sessions that end inside the year
        assert np.all(hours[last] == 1.0)
        n_sessions = int((connected & ~np.r_[False, connected[:-1]]).sum())
        assert n_sessions > 300  # a daily commuter over a year

    def test_any_directory_with_missing_files_fails_clearly(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="schema.json"):
            load_citylearn(tmp_path)


@pytest.fixture(scope="module")
def profiles():
    return default_profiles()


class TestDefaultScenario:
    def test_calibration(self, profiles):
        days = profiles.num_rows * profiles.dt_s / 86400
        annual_kwh = profiles.home_channel("base_load_kw").mean(axis=1) * 8760
        assert abs(annual_kwh.mean() / ANNUAL_BASE_LOAD_KWH - 1) < 0.05
        pv_yield = profiles.home_channel("pv_kw_per_kwp").sum(axis=1) * profiles.dt_s / 3600
        assert np.all((1100 < pv_yield) & (pv_yield < 1700))  # kWh/kWp/yr in North Carolina
        litres_per_day = profiles.home_channel("dhw_draw_l").sum(axis=1) / days
        assert abs(litres_per_day.mean() / 190.0 - 1) < 0.05
        temp = profiles.grid_channel("outdoor_temp_c")
        assert temp.min() < -5 and temp.max() > 30  # Greensboro TMY: real winters and summers

    def test_ev_sessions_are_overnight(self, profiles):
        conn = profiles.home_channel("ev_connected")
        hour = (np.arange(profiles.num_rows) * profiles.dt_s // 3600) % 24
        assert conn[:, hour == 2].mean() > 0.6 and conn[:, hour == 13].mean() < 0.05

    def test_deterministic(self, profiles):
        other = default_profiles.__wrapped__(64, 2026)
        np.testing.assert_array_equal(other.home, profiles.home)


def tiny_profiles(rows=8, dt_s=900):
    home = np.zeros((rows, 1, len(H)), dtype=np.float32)
    home[:, 0, H["base_load_kw"]] = np.arange(rows)
    home[:, 0, H["dhw_draw_l"]] = 10.0
    home[2:8, 0, H["ev_connected"]] = 1.0  # rows 2..7: the whole second hour, half of the first
    grid = np.zeros((rows, 5))
    grid[:, 2] = np.arange(rows)
    return Profiles(dt_s, home, grid, "2023-01-01", ("p0",))


class TestResampling:
    def test_coarsen_means_powers_sums_volumes_and_keeps_partial_ev_steps(self):
        p = tiny_profiles().coarsen(3600)
        assert p.num_rows == 2
        np.testing.assert_allclose(p.home_channel("base_load_kw")[0], [1.5, 5.5])
        np.testing.assert_allclose(p.home_channel("dhw_draw_l")[0], [40.0, 40.0])
        np.testing.assert_array_equal(p.home_channel("ev_connected")[0], [0.5, 1.0])  # plugged 30 min, then 60
        np.testing.assert_allclose(p.grid_channel("price_import"), [1.5, 5.5])

    def test_coarsened_sessions_keep_arrival_departure_and_energy(self):
        """A session plugged in 18:30-07:30 with 20 -> 80 % of 60 kWh, at 15 min and coarsened to 1 h: the
        hourly rows carry the same plug-in time (30 min of the 18:00 hour), departure (13 h after 18:30,
        so 13.5 h from 18:00 and 0.5 h from 07:00) and energy (hand-worked)."""
        rows = 96 * 2
        home = np.zeros((rows, 1, len(H)), dtype=np.float32)
        arrive, depart = 18 * 4 + 2, (24 + 7) * 4 + 2  # 18:30 and 07:30 next day, in 15-min rows
        r = np.arange(arrive, depart)
        home[r, 0, H["ev_connected"]] = 1.0
        home[r, 0, H["ev_hours_to_departure"]] = (depart - r) * 0.25
        home[r, 0, H["ev_capacity_kwh"]] = 60.0
        home[r, 0, H["ev_arrival_soc"]] = 0.2
        home[r, 0, H["ev_target_soc"]] = 0.8
        hourly = Profiles(900, home, np.zeros((rows, 5)), "2023-01-01", ("p0",)).coarsen(3600)
        conn = hourly.home_channel("ev_connected")[0]
        hours = hourly.home_channel("ev_hours_to_departure")[0]
        assert conn[17] == 0.0 and conn[18] == 0.5 and conn[19] == 1.0 and conn[30] == 1.0 and conn[31] == 0.5
        assert conn[32] == 0.0
        assert hours[18] == pytest.approx(13.5) and hours[31] == pytest.approx(0.5)
        assert conn.sum() == pytest.approx(13.0)  # plugged-in hours kept exactly
        for name, value in (("ev_capacity_kwh", 60.0), ("ev_arrival_soc", 0.2), ("ev_target_soc", 0.8)):
            np.testing.assert_allclose(hourly.home_channel(name)[0][18:32], value)

    def test_finer_resolution_keeps_data_and_rejects_non_divisors(self):
        p = tiny_profiles()
        assert for_resolution(p, 4) is p
        with pytest.raises(ValueError, match="dt_s=7 s must divide"):
            for_resolution(p, 7)
        with pytest.raises(ValueError, match="whole multiple"):
            p.coarsen(1000)

    def test_profiles_validate_shape_and_values(self):
        p = tiny_profiles()
        with pytest.raises(ValueError, match="Profiles.grid must have shape"):
            Profiles(900, p.home, p.grid[:3], "2023-01-01", ("p0",))
        bad = p.home.copy()
        bad[0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            Profiles(900, bad, p.grid, "2023-01-01", ("p0",))


class TestGenerators:
    def test_regulation_signal_is_bounded_and_energy_neutral(self):
        s = synthetic.regulation_signal(np.random.default_rng(0), 3600, dt_s=2.0)
        assert np.abs(s).max() <= 1.0 and np.abs(s).max() > 0.9
        windows = s[: (3600 // 450) * 450].reshape(-1, 450)  # 15-minute windows at 2 s
        assert np.abs(windows.mean(axis=1)).max() < 0.02

    def test_ev_energy_grows_with_skipped_days(self):
        rng = np.random.default_rng(1)
        stats = synthetic.EvSessionStats(plug_in_probability=0.5)
        ev = synthetic.ev_sessions(rng, 20, 60, 24, stats)
        assert ev.shape == (20, 60 * 24, 5)
        need = (ev[:, :, 4] - ev[:, :, 3]) * ev[:, :, 2]
        assert need.max() > 8.1 * 2  # more than one median day's driving when a day was skipped
        assert np.all(ev[:, :, 3][ev[:, :, 0] > 0] >= 0)


def test_ev_sessions_wrap_around_the_year():
    ev = synthetic.ev_sessions(np.random.default_rng(0), 30, 7, 24, synthetic.EvSessionStats(plug_in_probability=1.0))
    conn = ev[:, :, 0] > 0.5
    # every session ends exactly when its hours-to-departure runs out, also across the wrap
    nxt = np.roll(conn, -1, axis=1)
    last = conn & ~nxt
    np.testing.assert_allclose(ev[:, :, 1][last], 1.0)
    assert conn[:, 0].all()  # the last evening's sessions continue into the first morning


def test_citylearn_calendar_comes_from_the_data(citylearn_dir):
    """CityLearn's day_type (EnergyPlus: 1 = Sunday .. 7 = Saturday) says the 2022 data begins on a Sunday,
    although its schema's start date (2024-08-01) is a Thursday: the weekend flag follows the data, and the
    day of the year follows the start date (August 1st, not January 1st)."""
    from vpprl.envs import VppEnv

    raw = pd.read_csv(citylearn_dir / "Building_1.csv.gz")
    assert raw["day_type"].iloc[0] == 1 and raw["day_type"].iloc[30] == 2  # Sunday, then Monday
    env = VppEnv(task="price_arbitrage", dataset="citylearn_2022", dt_s=3600, start_day=0)
    obs, _ = env.reset(seed=0)
    glob = dict(zip(env.global_features, obs[-len(env.global_features):]))
    assert glob["weekend"] == 1.0
    assert glob["sin_day_of_year"] == pytest.approx(np.sin(2 * np.pi * 213 / 365), abs=1e-5)
    env.set_start_day(1)
    obs, _ = env.reset(seed=0)
    assert dict(zip(env.global_features, obs[-len(env.global_features):]))["weekend"] == 0.0
