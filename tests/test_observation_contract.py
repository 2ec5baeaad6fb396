"""The observation contract: what a policy sees at step t is computable at t by a dispatch loop.

Perturb everything the data holds from step t on (load, PV, hot-water draws and weather of step t itself
and every later step; EV sessions, the flexible-load schedule and the carbon intensity after it) and the
observation at t must not change. The published tariff is the one thing a dispatcher knows ahead; with
``prices="persistence"`` (a real-time price) it is perturbed too. The same test on perfect foresight (the
old behaviour, and the oracle's view) fails: it is a test that can fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from vpprl.data.default_scenario import default_profiles
from vpprl.data.profiles import G, H, Profiles
from vpprl.envs import FleetConfig, VppEnv
from vpprl.envs.forecast import ForecastConfig

DECIDE_AT = 40  # steps of 15 minutes into the episode
START_DAY = 30


def _perturbed(p: Profiles, first_row: int, prices: bool, rng: np.random.Generator) -> Profiles:
    home, grid = p.home.copy(), p.grid.copy()
    now = slice(first_row, None)  # the step being decided and everything after it
    later = slice(first_row + 1, None)  # strictly after: known at the step start (plug-in, schedule)
    for ch in ("base_load_kw", "pv_kw_per_kwp", "dhw_draw_l"):
        home[now, :, H[ch]] *= rng.uniform(0.2, 3.0, home[now, :, H[ch]].shape).astype(np.float32)
    for ch in ("ev_connected", "flex_load_kw", "ev_hours_to_departure"):
        home[later, :, H[ch]] = rng.permutation(home[later, :, H[ch]])
    # weather shuffled within the future: the year's design temperatures and peak sun, from which heat
    # pumps are sized (published climate statistics), stay the same, so the fleet itself is unchanged
    grid[now, G["outdoor_temp_c"]] = rng.permutation(grid[now, G["outdoor_temp_c"]])
    grid[now, G["ghi_w_m2"]] = rng.permutation(grid[now, G["ghi_w_m2"]])
    grid[later, G["carbon_kg_per_kwh"]] *= rng.uniform(0.5, 2.0, grid[later].shape[0])
    if prices:
        grid[now, G["price_import"]] *= rng.uniform(0.5, 2.0, grid[now].shape[0])
    return dataclasses.replace(p, home=home, grid=grid)


def _observation_at_t(profiles: Profiles, forecast: ForecastConfig) -> np.ndarray:
    env = VppEnv(profiles=profiles, task={"price_arbitrage": {}, "demand_response": {}, "peak_shaving": {}},
                 fleet=FleetConfig(num_homes=12, seed=3, max_day_shift=0, time_jitter_minutes=0.0),
                 episode_hours=24.0, dt_s=900, start_day=START_DAY, forecast=forecast)
    obs, _ = env.reset(seed=7)
    rng = np.random.default_rng(11)
    for _ in range(DECIDE_AT):
        obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    return obs


@pytest.mark.parametrize("prices", ["published", "persistence"])
def test_observation_does_not_read_the_future(prices):
    p = default_profiles(16)
    first_row = START_DAY * 96 + DECIDE_AT
    forecast = ForecastConfig(prices=prices)
    future = _perturbed(p, first_row, prices=prices == "persistence", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(_observation_at_t(p, forecast), _observation_at_t(future, forecast))


def test_perfect_foresight_reads_the_future():
    """The oracle's view (and every observation before the contract) changes with the future."""
    p = default_profiles(16)
    future = _perturbed(p, START_DAY * 96 + DECIDE_AT, prices=False, rng=np.random.default_rng(0))
    perfect = ForecastConfig.perfect()
    assert not np.array_equal(_observation_at_t(p, perfect), _observation_at_t(future, perfect))
