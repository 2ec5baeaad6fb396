"""Held-out means held out: training and evaluation never share a day, a fleet or (for the climate and
CityLearn sets) a data source; the held-out climates are real typical years from pvlib."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.data.default_scenario import default_profiles
from vpprl.envs import FleetConfig, VppEnv
from vpprl.envs.splits import is_held_out, start_days
from vpprl.training.config import TrainConfig
from vpprl.training.evaluation import EvaluateConfig
from vpprl.training.train import held_out_fleet


def _episode_days(env: VppEnv, seeds: range) -> set[int]:
    days = set()
    for seed in seeds:
        info = env.reset_fleet(seed=seed)
        first = info["start_seconds"] // 86400
        last = (info["start_seconds"] + env.episode_steps * env.config.dt_s - 1) // 86400
        days |= set(range(first, last + 1))
    return days


@pytest.mark.parametrize("hours", [6.0, 24.0, 48.0])
def test_training_and_evaluation_days_are_disjoint(hours):
    """Every fifth week held out (days 28-34, 63-69, ...); training episodes (random days and hours) never
    touch one, nor start the day after one (their forecasts read the previous day)."""
    train = VppEnv(num_homes=3, episode_hours=hours, days="train")
    held = VppEnv(num_homes=3, episode_hours=hours, days="held_out")
    train_days, held_days = _episode_days(train, range(300)), _episode_days(held, range(100))
    assert not train_days & held_days
    assert all((d // 7) % 5 == 4 for d in held_days)  # hand-written rule, not the code under test
    assert not any(((d - 1) // 7) % 5 == 4 for d in {d for d in train_days if d - 1 not in train_days})
    assert len(train_days) > 150 and len(held_days) >= 10
    with pytest.raises(ValueError, match=r"start_day: day 15 is not a 'held_out' day"):
        held.set_start_day(15)


def test_what_homes_read_stays_in_the_split():
    """Homes are shifted by whole days in exploration (fleet.max_day_shift); with a split they are not (a shift
    would read the other split's weeks), and a training episode's DR history (the baseline's lookback) is
    training days: every profile row any home reads is in the split (worked from the rows it reads)."""
    for split, held in (("train", False), ("held_out", True)):
        env = VppEnv(task={"price_arbitrage": {}, "demand_response": {}}, num_homes=20, days=split)
        for seed in range(12):
            env.reset(seed=seed)
            f = env.fleet
            shift_rows = np.asarray(f.layout.shift_s) // f.profiles.dt_s
            steps = np.arange(env.episode_steps)
            rows = (f.start_s // f.dt_s + steps)[:, None] + shift_rows[None, :]  # every home's row, every step
            days = np.unique((rows * f.profiles.dt_s) // 86400 % 365)
            assert all(is_held_out(days) == held), (split, seed)
            if split == "train":
                lookback = env.tasks[1].history_days
                first = f.start_s // 86400
                assert not any(is_held_out(np.arange(first - lookback - 1, first)))
    shifted = VppEnv(num_homes=20).fleet.layout.shift_s
    assert np.abs(np.asarray(shifted)).max() > 86400  # without a split homes are shifted by days


def test_training_defaults_train_on_training_days_and_evaluate_on_held_out_ones():
    cfg = TrainConfig()
    assert cfg.env_kwargs()["days"] == "train" and cfg.eval_days == "held_out"
    assert all(is_held_out(d) for d in cfg.eval_start_days)
    assert EvaluateConfig().days == "held_out"
    assert held_out_fleet(cfg.fleet).seed != cfg.fleet.seed
    assert len(start_days("held_out", 0, 364, 24.0)) == 50  # 10 weeks x 5: a week's first and last day are margins


def test_held_out_climates_are_other_places():
    """Miami (TMY2) and Sand Point, AK (TMY3) from pvlib's data: a hot and a cold year, the sun at its
    local solar noon (longitude vs the time-zone meridian)."""
    home = default_profiles(4)
    miami = default_profiles(4, climate="miami")
    cold = default_profiles(4, climate="sand_point")
    t = lambda p: p.grid_channel("outdoor_temp_c")  # noqa: E731
    assert t(miami).min() > 0 > t(home).min() and t(miami).mean() > t(home).mean() + 8
    assert t(cold).max() < 25 < t(home).max()
    np.testing.assert_array_equal(miami.home_channel("base_load_kw"), home.home_channel("base_load_kw"))
    for p, noon in ((miami, 12.0 + (80.27 - 75) / 15), (cold, 12.0 + (160.52 - 135) / 15)):
        ghi = p.grid_channel("ghi_w_m2").reshape(365, 96).mean(axis=0)
        peak_h = (np.argmax(ghi) + 0.5) / 4
        assert abs(peak_h - noon) <= 0.5
    env = VppEnv(num_homes=2, climate="miami")
    assert "miami" in env.fleet.profiles.source
    with pytest.raises(ValueError, match=r"ScenarioConfig.climate must be one of"):
        VppEnv(num_homes=2, climate="paris")
    with pytest.raises(ValueError, match=r"applies to the default scenario only"):
        VppEnv(dataset="citylearn_2022", climate="miami")


def test_fleet_config_seed_gives_other_homes():
    a = VppEnv(fleet=FleetConfig(num_homes=50, seed=0)).fleet.layout
    b = VppEnv(fleet=held_out_fleet(FleetConfig(num_homes=50, seed=0))).fleet.layout
    assert not np.array_equal(a.battery.capacity_kwh, b.battery.capacity_kwh)
