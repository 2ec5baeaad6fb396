"""K fleets simulated in one vectorized pass (``VppHomeBatchEnv(fleets=K)``, ``Fleet.clocks``) are K independent
fleets: checked against K single-fleet envs (the simulator every other test checks) started at the same times from
the same device states and driven by the same actions, row by row and step by step."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.deployment import Shield, ShieldConfig
from vpprl.envs import VppEnv, VppHomeBatchEnv
from vpprl.envs.fleet import NUM_DEVICE_CLASSES

HOMES, FLEETS = 5, 3
SCENARIOS = {  # six hours from random hours with the shaping potential, shielded; a whole day of peak shaving
    # alone without a shield (EVs leave with energy unmet in some fleets; feeders overshoot in some fleets at a time)
    "arbitrage_and_peak": ({"task": {"price_arbitrage": {}, "peak_shaving": {"limit_kw_per_home": 1.5}},
                            "num_homes": HOMES, "seed": 3, "episode_hours": 6.0,
                            "storage_potential": "highest_price_ahead"}, True),
    "peak_alone_day": ({"task": {"peak_shaving": {"limit_kw_per_home": 2.0}}, "num_homes": HOMES, "seed": 5,
                        "fleet": {"num_homes": HOMES, "seed": 5, "ownership": {"ev": 0.8}}}, False),
}


def _block(k: int) -> slice:
    return slice(k * HOMES, (k + 1) * HOMES)


def _separate_fleets_started_like(batch: VppHomeBatchEnv, scenario: dict, seeds: list[int],
                                  shield: bool) -> list[VppHomeBatchEnv]:
    """One single-fleet env per block of ``batch``, at that block's start time and device states."""
    fleet = batch.env.fleet
    envs = []
    for k in range(FLEETS):
        states = {"battery": fleet.battery.energy_kwh[_block(k)], "thermostat": fleet.thermostat.temp_c[_block(k)],
                  "water_heater": fleet.water_heater.temp_c[_block(k)]}
        own = {**scenario, "seed": seeds[k]}
        if "fleet" in own:
            own["fleet"] = {**own["fleet"], "seed": seeds[k]}
        env = VppHomeBatchEnv({**own, "shield": Shield() if shield else None})
        env.reset(seed=100 + k, options={"start_seconds": int(fleet.start_s[k]), "device_states": states})
        envs.append(env)
    return envs


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fleets_in_one_pass_step_exactly_like_separate_fleets(name):
    scenario, shield = SCENARIOS[name]
    seeds = [scenario["seed"] + 10 * k for k in range(FLEETS)]
    batch = VppHomeBatchEnv({**scenario, "fleets": FLEETS, "fleet_seeds": seeds, "shield": Shield() if shield else None})
    obs, info = batch.reset(seed=11)
    assert obs.shape == batch.observation_space.shape == (HOMES * FLEETS, len(batch.home_features)
                                                          + len(batch.global_features))
    starts = batch.env.fleet.start_s
    assert len(set(starts.tolist())) == FLEETS  # each fleet its own day (and hour, for episodes under a day)
    hours = set((starts % 86400).tolist())
    assert len(hours) == 1 if scenario.get("episode_hours", 24.0) == 24.0 else len(hours) > 1
    singles = _separate_fleets_started_like(batch, scenario, seeds, shield)
    single_obs = [env.env.agent_observations() for env in singles]
    rng = np.random.default_rng(0)
    done = False
    steps = mixed_overshoot = 0
    while not done:
        for k in range(FLEETS):
            np.testing.assert_array_equal(obs[_block(k)], single_obs[k])
        action = rng.uniform(-1.5, 1.5, (HOMES * FLEETS, NUM_DEVICE_CLASSES)).astype(np.float32)
        obs, reward, _, done, info = batch.step(action)
        outs = [env.step(action[_block(k)]) for k, env in enumerate(singles)]
        for k, (o, r, _, d, inf) in enumerate(outs):
            single_obs[k] = o
            assert d == done
            np.testing.assert_array_equal(info["reward_per_home"][_block(k)], inf["reward_per_home"])
            if shield:
                np.testing.assert_array_equal(info["shield_moved_kw"][_block(k)], inf["shield_moved_kw"])
        assert reward == pytest.approx(np.mean([r for _, r, *_ in outs]), rel=1e-6)
        overshoot = batch.env.task("peak_shaving").overshoot_kw > 0
        mixed_overshoot += overshoot.any() and not overshoot.all()
        steps += 1
    assert steps == batch.env.episode_steps
    kpis = [inf["kpis"] for *_, inf in outs]
    for key, value in info["kpis"].items():  # the mean over the fleets
        assert value == pytest.approx(np.mean([k[key] for k in kpis]), rel=1e-9, abs=1e-12), key
    assert np.std([k["energy_cost"] for k in kpis]) > 0.01 * abs(info["kpis"]["energy_cost"])  # fleets differ
    assert mixed_overshoot > 0 and sum(k["feeder_overshoot_kwh"] > 0 for k in kpis) >= 2
    if name == "peak_alone_day":  # EVs left with energy unmet, in some fleets more than others: a mean of ratios
        unmet = [k["ev_unmet_fraction"] for k in kpis]
        assert all(k["ev_required_kwh"] > 0 for k in kpis) and len(set(unmet)) > 1


def test_flexible_loads_settle_at_each_fleets_own_midnight():
    from vpprl.envs import FleetConfig, Ownership

    own = Ownership(battery=0.0, ev=0.0, pv=0.0, water_heater=0.0, thermostat=0.0, flex_load=1.0)
    kw = {"task": "price_arbitrage", "fleet": FleetConfig(num_homes=2, seed=0, ownership=own), "episode_hours": 3.0}
    midnight = 86400 * 40
    batch = VppHomeBatchEnv({**kw, "fleets": 2})  # fleet 0 starts 1 h before its midnight, fleet 1 2 h before
    batch.reset(seed=0, options={"start_seconds": np.array([midnight - 3600, midnight - 7200])})
    single = VppHomeBatchEnv(kw)  # fleet 0's sites alone (same seed, start and states)
    single.reset(seed=0, options={"start_seconds": midnight - 3600,
                                  "device_states": {"battery": batch.env.fleet.battery.energy_kwh[:2]}})
    curtail = np.zeros((4, NUM_DEVICE_CLASSES), np.float32)
    curtail[:, 5] = -1.0  # every site curtails: a backlog builds up, settled as unserved energy at midnight
    for step in range(1, 9):
        batch.step(curtail)
        settled = batch.env.fleet.last_outcome.costs["flex_unserved_kwh"]
        if step <= 4:
            single.step(curtail[:2])
            np.testing.assert_array_equal(settled[:2], single.env.fleet.last_outcome.costs["flex_unserved_kwh"])
        assert (settled[:2].sum() > 0) == (step == 4), step  # fleet 0's midnight ends its 4th step
        assert (settled[2:].sum() > 0) == (step == 8), step  # fleet 1's its 8th


def test_resampled_fleets_in_one_pass_are_fresh_per_episode_and_replay_from_the_seed():
    env = VppHomeBatchEnv(task="price_arbitrage", num_homes=4, fleets=3, resample_fleet=True)
    env.reset(seed=7)
    first = env.env.fleet.layout.battery.capacity_kwh.copy()
    assert len({first[_slice].tobytes() for _slice in (slice(0, 4), slice(4, 8), slice(8, 12))}) == 3
    env.reset()
    assert not np.array_equal(first, env.env.fleet.layout.battery.capacity_kwh)
    again = VppHomeBatchEnv(task="price_arbitrage", num_homes=4, fleets=3, resample_fleet=True)
    again.reset(seed=7)
    np.testing.assert_array_equal(first, again.env.fleet.layout.battery.capacity_kwh)


def test_what_fleets_in_one_pass_do_not_support_is_refused_at_start_up():
    with pytest.raises(ValueError, match=r"support the tasks \['peak_shaving', 'price_arbitrage'\].*\['demand_response'\]"):
        VppHomeBatchEnv(task="demand_response", num_homes=2, fleets=2)
    with pytest.raises(ValueError, match="feeder limit"):
        VppHomeBatchEnv(task="price_arbitrage", num_homes=2, fleets=2,
                        shield=Shield(ShieldConfig(feeder_limit_kw=10.0)))
    with pytest.raises(ValueError, match=r"fleets must be a whole number in \[1, 4096\]"):
        VppHomeBatchEnv(task="price_arbitrage", num_homes=2, fleets=0)
    with pytest.raises(TypeError, match="no centralized observation"):
        VppEnv(task="price_arbitrage", num_homes=2, fleet_seeds=[0, 1]).reset(seed=0)
    from vpprl.agents.oracle import Mpc
    from vpprl.agents.rule_based import RuleBased

    env = VppEnv(task="price_arbitrage", num_homes=2, fleet_seeds=[0, 1])
    env.reset_fleet(seed=0)
    for controller in (RuleBased(), Mpc()):  # they plan on one fleet's clock, prices and aggregates
        with pytest.raises(ValueError, match="plans and acts on one fleet; this env simulates 2 fleets"):
            controller.reset(env)


def test_reset_options_are_checked():
    env = VppHomeBatchEnv(task="price_arbitrage", num_homes=2, fleets=2)
    with pytest.raises(ValueError, match=r"start_seconds must be whole seconds in \[0, \d+\]"):
        env.reset(options={"start_seconds": np.array([0, 10**9])})
    with pytest.raises(ValueError, match=r"one per fleet \(2\)"):
        env.reset(options={"start_seconds": np.array([0, 3600, 7200])})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['start_day'\]"):
        env.reset(options={"start_day": 3})
    from vpprl.envs.splits import is_held_out

    held_out_day = int(np.flatnonzero(is_held_out(np.arange(365)))[3])
    training = VppHomeBatchEnv(task="price_arbitrage", num_homes=2, fleets=2, days="train")
    with pytest.raises(ValueError, match="not a 'train' start day"):
        training.reset(options={"start_seconds": np.array([int(training.env.start_days[0]), held_out_day]) * 86400})
