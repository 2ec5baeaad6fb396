"""Environments: official checkers, registered ids, views agree, truncation, KPIs, CityLearn data."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import vpprl.envs
from gymnasium.utils.env_checker import check_env
from vpprl.envs import ENV_IDS, VppEnv
from vpprl.envs.fleet import NUM_DEVICE_CLASSES
from vpprl.envs.observation import HOME_FEATURES


def test_importing_envs_does_not_import_torch_or_ray():
    code = "import sys, vpprl.envs; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_registered_envs_pass_gymnasium_check_env(env_id):
    env = gym.make(env_id, num_homes=7, seed=3)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.n == 7 and env.unwrapped.config.fleet.seed == 3


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_episode_truncates_at_horizon_with_kpis(env_id):
    env = gym.make(env_id, num_homes=12, seed=0, episode_hours=1.0)
    env.reset(seed=1)
    steps, info = 0, {}
    while True:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and np.isfinite(reward)
        assert set(info["costs"]) == set(vpprl.envs.COST_NAMES)
        assert all(v.shape == (12,) for v in info["costs"].values())
        if truncated:
            break
    assert steps == env.unwrapped.episode_steps
    kpis = info["kpis"]
    for key in ("energy_cost", "peak_kw", "load_factor", "ramping_kw", "discomfort_degh", "ev_unmet_kwh",
                "emissions_kg"):
        assert np.isfinite(kpis[key]), key
    assert 0 < kpis["load_factor"] <= 1.0


def test_determinism_by_seed():
    def rollout(seed: int, env_seed: int):
        env = VppEnv(task="demand_response", num_homes=40, seed=seed)
        obs, _ = env.reset(seed=env_seed)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(20):
            obs, r, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            out.append(obs)
            out.append(np.array([r]))
        return np.concatenate(out)

    np.testing.assert_array_equal(rollout(1, 5), rollout(1, 5))
    assert not np.array_equal(rollout(1, 5), rollout(1, 6))  # different episode (start day, states)
    assert not np.array_equal(rollout(2, 5), rollout(1, 5))  # different fleet


def test_observation_layout_and_reward_decomposition():
    env = VppEnv(task={"price_arbitrage": {}, "peak_shaving": {"limit_kw_per_home": 0.5}}, num_homes=25)
    obs, _ = env.reset(seed=0)
    n_home = 25 * len(HOME_FEATURES)
    assert obs.shape == (n_home + len(env.global_features),)
    np.testing.assert_allclose(obs[:n_home].reshape(25, -1), env.home_observation(), rtol=1e-6)
    assert "peak_shaving.feeder_limit_per_home_kw" in env.global_features
    _, reward, _, _, info = env.step(np.zeros(env.action_space.shape))
    assert reward == pytest.approx(float(info["reward_per_home"].mean()), rel=1e-6)
    assert info["feeder_overshoot_kw"] > 0  # 0.5 kW per home is below what homes draw


def test_multi_agent_views_match_the_centralized_env():
    from vpprl.envs import VppMultiAgentEnv, VppParallelEnv

    kwargs = {"task": "peak_shaving", "num_homes": 6, "seed": 2}
    central = VppEnv(**kwargs)
    ma = VppMultiAgentEnv(kwargs)
    pz = VppParallelEnv(**kwargs)
    obs_c, _ = central.reset(seed=4)
    obs_m, _ = ma.reset(seed=4)
    obs_p, _ = pz.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.uniform(-1, 1, (6, NUM_DEVICE_CLASSES)).astype(np.float32)
        _, r_c, _, _, info = central.step(act.ravel())
        _, r_m, _, _, _ = ma.step({f"home_{i}": act[i] for i in range(6)})
        _, r_p, _, _, _ = pz.step({f"home_{i}": act[i] for i in range(6)})
        per_home = info["reward_per_home"]
        np.testing.assert_allclose([r_m[f"home_{i}"] for i in range(6)], per_home, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose([r_p[f"home_{i}"] for i in range(6)], per_home, rtol=1e-5, atol=1e-7)
        assert r_c == pytest.approx(float(np.mean(per_home)), rel=1e-5)


def test_pettingzoo_parallel_api_test():
    from pettingzoo.test import parallel_api_test
    from vpprl.envs import VppParallelEnv

    parallel_api_test(VppParallelEnv(task="demand_response", num_homes=4, episode_hours=2), num_cycles=12)


def test_rllib_multiagent_env_check():
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments
    from vpprl.envs import VppMultiAgentEnv

    env = VppMultiAgentEnv({"task": "frequency_regulation", "num_homes": 4, "episode_hours": 0.05})
    check_multiagent_environments(env)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:  # a full episode ends with __all__ truncated and no agents left
        obs, rew, term, trunc, info = env.step({a: env.get_action_space(a).sample() for a in obs})
        done = trunc["__all__"]
    assert env.agents == [] and "kpis" in info["__common__"]


def test_citylearn_env_one_home_per_building(citylearn_dir):
    env = gym.make("vpprl/PriceArbitrage-v0", dataset=str(citylearn_dir), dt_s=3600,
                   fleet={"ownership": {"thermostat": 0.0, "water_heater": 0.0, "flex_load": 0.0}})
    fleet = env.unwrapped.fleet
    assert fleet.n == 17
    np.testing.assert_allclose(fleet.layout.battery.capacity_kwh, 6.4)
    assert fleet.layout.pv_kwp[0] == 12.0 and (fleet.layout.ev.max_charge_kw > 0).sum() == 7
    env.reset(seed=0)
    base = []
    for _ in range(24):
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
        base.append(info["aggregate_kw"])
    assert np.all(np.isfinite(base)) and max(base) > 0


def test_citylearn_env_replicated_to_a_large_fleet(citylearn_dir):
    env = VppEnv(task="peak_shaving", dataset=str(citylearn_dir), citylearn_replicate=True, num_homes=500, dt_s=900)
    assert env.n == 500 and set(np.unique(env.fleet.layout.profile_index)) <= set(range(17))
    env.reset(seed=0)
    _, r, _, _, _ = env.step(np.zeros(env.action_space.shape))
    assert np.isfinite(r)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="unknown scenario option"):
        VppEnv(task="peak_shaving", num_home=3)


def test_site_net_load_features_are_over_the_site_power_scale():
    """A C&I site without other devices (no PV, no battery, nothing thermal) draws its home base load plus its
    flexible load's baseline on its own; the net-load features divide that by 10 kW + the flexible load's
    scale (a home: by 10 kW), so a 20-100 kW site stays in the range homes show the policy."""
    from vpprl.envs.fleet_config import FleetConfig, Ownership

    none = dict(battery=0.0, ev=0.0, pv=0.0, water_heater=0.0, thermostat=0.0)
    env = VppEnv(fleet=FleetConfig(num_homes=40, seed=2, ownership=Ownership(**none, flex_load=0.5)))
    env.reset(seed=0)
    col = {name: j for j, name in enumerate(HOME_FEATURES)}
    for _ in range(40):  # to 10:00
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    obs = env.home_observation().astype(np.float64)
    scale = env.fleet.layout.flex_load.scale_kw.astype(np.float64)
    sites, homes = scale > 0, scale == 0
    assert sites.sum() >= 5 and homes.sum() >= 5 and scale[sites].min() >= 20.0
    own_kw = obs[:, col["base_load_kw/5"]] * 5.0 + obs[:, col["flex_baseline_kw/100"]] * 100.0
    np.testing.assert_allclose(obs[sites, col["default_kw/site_kw"]], own_kw[sites] / (10.0 + scale[sites]),
                               rtol=1e-4)
    np.testing.assert_allclose(obs[homes, col["default_kw/site_kw"]], own_kw[homes] / 10.0, rtol=1e-4)
    # a baseline peaks at 2.35x its scale: under 2.5 (over 10 kW alone these sites read up to 23)
    assert np.abs(obs[sites, col["net_kw_last/site_kw"]]).max() < 2.5


def test_action_range_features_match_a_battery_and_an_ev_worked_by_hand():
    """+1 / -1 move a battery by its rated charge / discharge power (the physics clamps at the SoC limits
    after the mapping); a plugged-in EV 1 kWh short of its target charges 1 kWh / (efficiency * 0.25 h) on
    its own, so +1 adds the rest of its charger's rating and -1 takes that away plus its V2G rating. The
    zero-net battery action divides the home's own-control net load by the range on the side that cancels it."""
    env = VppEnv(num_homes=60, seed=4)
    env.reset(seed=0)
    fleet, col = env.fleet, {name: j for j, name in enumerate(HOME_FEATURES)}
    for _ in range(72):  # to 18:00, when EVs are home
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    ev = fleet.layout.ev
    plugged = np.flatnonzero(fleet.ev.connected > 0)
    assert len(plugged) >= 2
    energy = fleet.ev.energy_kwh.astype(np.float64).copy()
    target = fleet.ev.target_kwh.astype(np.float64)
    energy[plugged] = target[plugged] - 1.0
    fleet.set_device_states({"ev": energy})
    obs = env.home_observation()
    share = fleet.ev.available[plugged].astype(np.float64)  # the share of the step plugged in
    own = 1.0 / (ev.efficiency[plugged] * 0.25)
    assert np.all(own < ev.max_charge_kw[plugged] * share)
    np.testing.assert_allclose(obs[plugged, col["ev_kw_up/10"]], (ev.max_charge_kw[plugged] * share - own) / 10.0,
                               rtol=1e-4)
    np.testing.assert_allclose(obs[plugged, col["ev_kw_down/10"]],
                               (own + ev.max_discharge_kw[plugged] * share) / 10.0, rtol=1e-4)
    away = fleet.ev.connected == 0
    for name in ("ev_kw_up/10", "ev_kw_down/10", "ev_action_to_zero_net"):
        assert np.all(obs[away, col[name]] == 0.0)
    # the EV alone zeroes the net load: net > 0 is covered by charging less (and discharging, with V2G)
    net = obs[plugged, col["default_kw/site_kw"]].astype(np.float64) * 10.0  # homes: 10 kW
    up = ev.max_charge_kw[plugged] * share - own
    down = own + ev.max_discharge_kw[plugged] * share
    expected = np.clip(np.where(net > 0, -net / down, -net / up), -1.0, 1.0)
    assert (np.abs(expected) < 0.999).any()  # a V2G car covers the load with part of its range
    np.testing.assert_allclose(obs[plugged, col["ev_action_to_zero_net"]], expected, rtol=1e-4, atol=1e-6)

    b = fleet.layout.battery
    homes = np.flatnonzero(b.capacity_kwh > 0)
    assert len(homes) and (b.capacity_kwh == 0).any()
    up, down = b.max_charge_kw[homes].astype(np.float64), b.max_discharge_kw[homes].astype(np.float64)
    np.testing.assert_allclose(obs[homes, col["battery_kw_up/5"]], up / 5.0, rtol=1e-6)
    np.testing.assert_allclose(obs[homes, col["battery_kw_down/5"]], down / 5.0, rtol=1e-6)
    net = obs[homes, col["default_kw/site_kw"]].astype(np.float64) * 10.0  # homes: 10 kW
    expected = np.clip(np.where(net > 0, -net / down, -net / up), -1.0, 1.0)
    assert (np.abs(expected) < 0.999).any() and (expected != 0).all()
    np.testing.assert_allclose(obs[homes, col["battery_action_to_zero_net"]], expected, rtol=1e-4, atol=1e-6)
    none = b.capacity_kwh == 0
    for name in ("battery_kw_up/5", "battery_kw_down/5", "battery_action_to_zero_net"):
        assert np.all(obs[none, col[name]] == 0.0)


def _tuesday_start_seconds(env: VppEnv, hour: int) -> int:
    """Seconds from the data's first row to ``hour``:00 of its first Tuesday after day 30 (the calendar from
    Python's datetime, not the tariff code), so that the next 24 hours are Tuesday and Wednesday."""
    import datetime

    first = env.fleet.profiles.start_date()
    day = next(d for d in range(30, 40) if (first + datetime.timedelta(days=d)).weekday() == 1)
    return day * 86400 + hour * 3600


@pytest.mark.parametrize("hour, cheaper_h, dearer_h", [(18, 19.0, 0.0), (10, 10.0, 5.0)])
def test_price_rank_features_match_the_tariff_worked_by_hand(hour, cheaper_h, dearer_h):
    """The default time-of-use tariff (weekdays: off-peak before 07:00 and from 21:00, mid-peak 07-16, on-peak
    16-21). Tuesday 18:00 (on-peak): of the next 24 hours, Tuesday 18-21 and Wednesday 16-18 are on-peak, the
    other 19 cheaper, none dearer. Tuesday 10:00 (mid-peak): 21:00-07:00 (10 h) cheaper, 16-21 (5 h) dearer."""
    env = VppEnv(num_homes=4, seed=0)
    obs, _ = env.reset(seed=0, options={"start_seconds": _tuesday_start_seconds(env, hour)})
    names = list(env.global_features)
    glob = obs[-len(names):] if obs.ndim == 1 else None
    assert glob is not None
    assert glob[names.index("price_arbitrage.price_cheaper_h_next_24h/24")] == pytest.approx(cheaper_h / 24)
    assert glob[names.index("price_arbitrage.price_dearer_h_next_24h/24")] == pytest.approx(dearer_h / 24)
