"""Safety shield: no hard-limit violation whatever the policy outputs, deadlines met when feasible,
comfort kept when reachable, feasible setpoints untouched, limits shared, garbage handled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vpprl.deployment import Shield, ShieldConfig, ShieldWrapper
from vpprl.envs import FleetConfig, VppEnv
from vpprl.envs.fleet import EV, NUM_DEVICE_CLASSES, THERMOSTAT, WATER_HEATER
from vpprl.envs.fleet_config import Ownership

WH_PER_HOME = 1e-3  # float32 state exactly at a limit rounds by fractions of a watt-hour


def env_for(seed: int, n: int = 40, task: str = "price_arbitrage", hours: float = 24.0) -> VppEnv:
    own = Ownership(battery=0.6, ev=0.6, pv=0.6, water_heater=0.6, thermostat=0.8, flex_load=0.05)
    return VppEnv(task=task, fleet=FleetConfig(num_homes=n, seed=seed, ownership=own), episode_hours=hours)


def adversarial_actions(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    a = {"normal": lambda: rng.normal(0, 1, size), "huge": lambda: rng.normal(0, 1e9, size),
         "extreme": lambda: rng.choice([-1.0, 1.0], size)}[kind]()
    a[rng.random(size) < 0.05] = rng.choice([np.nan, np.inf, -np.inf])
    return a


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["normal", "huge", "extreme"]),
       start_day=st.integers(0, 364))
def test_no_hard_limit_violation_over_an_episode(seed, kind, start_day):
    """Battery reserve, device limits, site limits and EV deadlines (feasible at arrival) hold for any
    action; comfort is only lost in steps where the band was out of reach."""
    env = env_for(seed)
    env.config.start_day = start_day
    env.reset(seed=seed)
    shield, f, rng = Shield(), env.fleet, np.random.default_rng(seed)
    feasible_session = np.ones(f.n, bool)
    for _ in range(env.episode_steps):
        arrived = f.ev.arrived
        ok = f.ev.energy_needed_kwh <= f.ev.params.max_charge_kw * f.ev.params.efficiency * f.ev.hours_to_departure
        feasible_session = np.where(arrived, ok, feasible_session)
        res = shield.project(f, f.setpoints_from_action(adversarial_actions(rng, env.action_space.shape[0], kind)))
        assert np.all(np.isfinite(res.setpoints_kw))
        p_min, p_max = f.feasible_power()
        assert np.all(res.setpoints_kw >= p_min - 1e-4) and np.all(res.setpoints_kw <= p_max + 1e-4)
        base = f.base_load_kw.astype(float)
        unreachable_site = (base + res.setpoints_kw.sum(axis=0)) > f.layout.site_import_limit_kw + 1e-3
        _, _, _, _, info = env.step_setpoints(res.setpoints_kw)
        c = info["costs"]
        assert c["power_limit_kwh"].max() < 1e-3
        assert c["battery_reserve_kwh_h"].max() < WH_PER_HOME
        assert c["site_limit_kwh"][~unreachable_site].max(initial=0.0) < 1e-3
        assert c["ev_unmet_kwh"][feasible_session].max(initial=0.0) < WH_PER_HOME
        for j, key in ((THERMOSTAT, "thermal_discomfort_degh"), (WATER_HEATER, "dhw_discomfort_degh")):
            assert c[key][~res.unreachable[j]].max(initial=0.0) < 1e-4, key


def test_feasible_setpoints_are_returned_unchanged():
    env = env_for(3)
    env.reset(seed=1)
    shield, f, rng = Shield(), env.fleet, np.random.default_rng(0)
    for _ in range(30):
        lo, hi, _ = shield.safe_bounds(f)
        inside = lo + (hi - lo) * rng.uniform(0.05, 0.95, lo.shape)
        inside = shield.project(f, inside).setpoints_kw  # make it meet the coupling limits too
        res = shield.project(f, inside)
        np.testing.assert_array_equal(res.setpoints_kw, inside)
        assert not res.intervened.any()
        env.step_setpoints(res.setpoints_kw)


def test_default_behaviour_is_barely_touched():
    """Devices left to their own control are already safe nearly everywhere."""
    env = env_for(5, n=100)
    env.reset(seed=2)
    shield, f = Shield(), env.fleet
    moved = 0.0
    for _ in range(96):
        res = shield.project(f, f.action_ranges()[1].copy())
        moved += res.moved_kw.sum()
        env.step_setpoints(res.setpoints_kw)
    assert moved / (96 * 100) < 0.05  # kW per home-step


def test_ev_deadline_forces_charging_and_forbids_v2g():
    env = env_for(0, n=200)
    env.reset(seed=0)
    f = env.fleet
    for _ in range(200):  # find a step with a plugged-in V2G EV
        if (f.ev.connected & (f.ev.params.max_discharge_kw > 0)).any():
            break
        env.step(np.zeros(env.action_space.shape))
    i = np.flatnonzero(f.ev.connected & (f.ev.params.max_discharge_kw > 0))[0]
    # pretend the EV needs exactly what full power can deliver by departure
    f.ev.energy_kwh[i] = f.ev.target_kwh[i] - f.ev.params.max_charge_kw[i] * f.ev.params.efficiency[i] * \
        f.ev.hours_to_departure[i]
    f.ev.energy_kwh[i] = max(f.ev.energy_kwh[i], 0.0)
    for dev in f.devices:
        dev.prepare()
    sp = np.zeros((NUM_DEVICE_CLASSES, f.n))
    sp[EV, i] = -1e6  # the policy asks for full V2G discharge
    res = Shield().project(f, sp)
    assert res.setpoints_kw[EV, i] == pytest.approx(f.ev.p_max[i], rel=1e-4) and res.intervened[EV, i]


def test_site_and_feeder_limits_are_shared_minimally():
    env = env_for(1, n=60)
    env.reset(seed=3)
    f = env.fleet
    lo, hi, _ = Shield().safe_bounds(f)
    greedy = hi.copy()  # every device at its maximum
    base = float(f.base_load_kw.sum())
    feeder = 0.5 * (base + float(lo.sum(axis=0).sum()) + base + float(hi.sum(axis=0).sum())) - base
    res = Shield(ShieldConfig(feeder_limit_kw=feeder + base)).project(f, greedy)
    total = base + res.setpoints_kw.sum()
    assert total <= feeder + base + 1e-3 and total >= feeder + base - 1.0  # at the limit, not far below
    net = f.base_load_kw + res.setpoints_kw.sum(axis=0)
    assert np.all(net <= f.layout.site_import_limit_kw + 1e-3)
    assert np.all(res.setpoints_kw >= lo - 1e-6) and np.all(res.setpoints_kw <= hi + 1e-6)


def test_bad_shapes_and_configs_fail_clearly():
    env = env_for(2, n=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"setpoints_kw must have shape \(D, N\) = \(6, 5\)"):
        Shield().project(env.fleet, np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"ShieldConfig.feeder_limit_kw must be a finite number > 0"):
        ShieldConfig(feeder_limit_kw=-3.0)


def test_shield_wrapper_reports_and_penalises_interventions():
    env = ShieldWrapper(env_for(4, n=30), penalty_per_kwh=1.0)
    env.reset(seed=0)
    # NaN actions are sanitised by the env's action map (counted there), then shielded
    _, _, _, _, info = env.step(np.full(env.action_space.shape, np.nan))
    assert info["action_stats"]["nonfinite"] == 30 * NUM_DEVICE_CLASSES
    assert info["shield_moved_kw"].shape == (30,)
    water_heater_interventions = 0.0
    for _ in range(16):  # everything at maximum: tanks reach the top of their band within a few steps
        _, reward, _, _, info = env.step(np.full(env.action_space.shape, 1.0))
        water_heater_interventions += info["shield"]["shield/water_heater/interventions"]
        assert reward == pytest.approx(float(info["reward_per_home"].mean()), rel=1e-6)
    assert water_heater_interventions > 0
    # raw NaN setpoints (the dispatch path) become the device default and are counted
    f = env.unwrapped.fleet
    res = Shield().project(f, np.full((NUM_DEVICE_CLASSES, 30), np.nan))
    assert res.nonfinite.all() and np.all(np.isfinite(res.setpoints_kw))
    with pytest.raises(TypeError, match="must wrap a VppEnv directly"):
        ShieldWrapper(ShieldWrapper(env_for(4, n=3)))


def test_multi_agent_views_take_the_same_shield():
    from vpprl.envs import VppMultiAgentEnv

    shield = Shield()
    ma = VppMultiAgentEnv({"task": "peak_shaving", "num_homes": 4, "shield": shield})
    obs, _ = ma.reset(seed=0)
    _, _, _, _, info = ma.step({a: np.full(6, 1e9, np.float32) for a in obs})
    assert ma.shield is shield and "shield/battery/interventions" in info["__common__"]["shield"]


def test_exact_per_home_shift_matches_bisection():
    rng = np.random.default_rng(0)
    lo = -rng.uniform(0, 5, (6, 500))
    hi = rng.uniform(0, 5, (6, 500))
    x = rng.uniform(-8, 8, (6, 500))
    target = rng.uniform(lo.sum(0) - 1, hi.sum(0) + 1)
    exact = Shield._exact_shift_per_home(x, lo, hi, target)
    np.testing.assert_allclose(exact.sum(0), np.clip(target, lo.sum(0), hi.sum(0)), atol=1e-9)
    # reference: plain bisection on mu, column by column (sum of clip(x - mu) is non-increasing in mu)
    goal = np.clip(target, lo.sum(0), hi.sum(0))
    reference = np.empty_like(x)
    for k in range(x.shape[1]):
        a, b = -100.0, 100.0
        for _ in range(200):
            mid = 0.5 * (a + b)
            a, b = (mid, b) if np.clip(x[:, k] - mid, lo[:, k], hi[:, k]).sum() > goal[k] else (a, mid)
        reference[:, k] = np.clip(x[:, k] - 0.5 * (a + b), lo[:, k], hi[:, k])
    np.testing.assert_allclose(exact, reference, atol=1e-6)


def test_shielded_policy_keeps_any_policy_safe_and_totals_interventions():
    from vpprl.agents.policy import Policy
    from vpprl.deployment.shielded_policy import ShieldedPolicy

    class FullBlast(Policy):
        name = "full_blast"

        def act(self, obs):
            return np.where(np.arange(self.env.action_space.shape[0]) % 2 == 0, 1.0, -1.0).astype(np.float32)

    env = VppEnv(task="price_arbitrage", num_homes=8, seed=0, episode_hours=4.0)
    policy = ShieldedPolicy(FullBlast(), Shield())
    obs, _ = env.reset(seed=0)
    policy.reset(env)
    done = False
    while not done:
        obs, _, _, done, info = env.step(policy.act(obs))
    kpis = info["kpis"]
    assert kpis["battery_reserve_kwh_h"] == 0.0 and kpis["site_limit_kwh"] == 0.0
    assert kpis["power_limit_kwh"] < 1e-3
    assert policy.interventions["shield/battery/interventions"] > 0
    assert set(policy.interventions) >= {f"shield/{d}/moved_kw" for d in ("battery", "ev", "thermostat")}
    policy.reset(env)
    assert policy.interventions == {}


def _qp_reference(x, lo, hi, base, imp, exp, feeder):
    """The minimal-norm safe point by a general solver (SciPy SLSQP), for a small fleet: min ||p - x||^2
    over the safe box with every home's service limits and the feeder limit as linear constraints."""
    from scipy.optimize import minimize

    d, n = x.shape
    idx = np.arange(d * n).reshape(d, n)
    cons = []
    for i in range(n):
        cols = idx[:, i]
        cons.append({"type": "ineq", "fun": lambda p, c=cols, i=i: imp[i] - base[i] - p[c].sum()})
        cons.append({"type": "ineq", "fun": lambda p, c=cols, i=i: base[i] + p[c].sum() + exp[i]})
    cons.append({"type": "ineq", "fun": lambda p: feeder - base.sum() - p.sum()})
    res = minimize(lambda p: float(((p - x.ravel()) ** 2).sum()), np.clip(x, lo, hi).ravel(),
                   jac=lambda p: 2 * (p - x.ravel()), bounds=list(zip(lo.ravel(), hi.ravel())),
                   constraints=cons, method="SLSQP", options={"maxiter": 500, "ftol": 1e-12})
    assert res.success, res.message
    return res.x.reshape(d, n)


@pytest.mark.parametrize("seed", range(6))
def test_feeder_and_service_limits_are_met_jointly_and_minimally(seed):
    """With a binding feeder limit the shield once shifted every device across its whole safe box and broke
    homes' own export limits, although a point meeting every limit existed; and projecting twice moved it
    again. The result must meet every limit, be idempotent, and be as close to the request as the
    minimal-norm point a general QP solver finds."""
    env = VppEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=8, seed=seed, ownership=Ownership(
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0), site_export_limit_kw=3.0, site_import_limit_kw=12.0), start_day=150)
    env.reset(seed=seed)
    for _ in range(48):  # to midday: PV up, EVs mostly away
        env.step(np.zeros(env.action_space.shape))
    f = env.fleet
    f.reveal()  # the shield runs on the step's true conditions, as inside env.step
    rng = np.random.default_rng(seed)
    lo, hi, _ = Shield().safe_bounds(f)
    x = np.where(rng.random(lo.shape) < 0.5, lo, hi) + rng.normal(0, 2, lo.shape)
    base = f.base_load_kw.astype(np.float64)
    imp = f.layout.site_import_limit_kw.astype(np.float64)
    exp = f.layout.site_export_limit_kw.astype(np.float64)
    home_lo = np.maximum(base + lo.sum(axis=0), -exp)  # the lowest net each home can reach within its limits
    home_hi = np.minimum(base + hi.sum(axis=0), imp)
    assert np.all(home_lo <= home_hi)  # every home's limits can be met inside its safe box
    feeder = float(home_lo.sum() + 0.3 * (home_hi.sum() - home_lo.sum()))  # binding, and feasible
    shield = Shield(ShieldConfig(feeder_limit_kw=feeder))
    p = shield.project(f, x).setpoints_kw
    net = base + p.sum(axis=0)
    assert np.all(p >= lo - 1e-6) and np.all(p <= hi + 1e-6)
    assert np.all(net <= imp + 1e-3) and np.all(net >= -exp - 1e-3)
    assert net.sum() <= feeder + 1e-3
    np.testing.assert_allclose(shield.project(f, p).setpoints_kw, p, atol=1e-6)
    ref = _qp_reference(x, lo, hi, base, imp, exp, feeder)
    assert ((p - x) ** 2).sum() <= ((ref - x) ** 2).sum() * (1 + 1e-4) + 1e-4


@pytest.mark.parametrize(("dt_s", "hours"), [(2, 9.0), (60, 12.0), (900, 48.0), (3600, 72.0)])
def test_ev_deadlines_hold_at_every_resolution(dt_s, hours):
    """A policy that always defers charging (and discharges V2G), behind the shield: every EV leaves with
    its energy, at 2 s, 1 min, 15 min and 1 h steps. At 1 h the sessions' partial first and last hours were
    once dropped (the EV left half an hour before the shield expected it): ~30 % of the energy went unmet."""
    env = ShieldWrapper(VppEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=40, seed=2, ownership=Ownership(
        0, 1.0, 0, 0, 0, 0), v2g_fraction=0.5), dt_s=dt_s, episode_hours=hours, start_day=60), Shield())
    env.reset(seed=0)
    defer = np.zeros((40, NUM_DEVICE_CLASSES), np.float32)
    defer[:, EV] = -1.0
    info = {}
    for _ in range(env.unwrapped.episode_steps):
        _, _, _, _, info = env.step(defer)
    kpis = info["kpis"]
    assert kpis["ev_required_kwh"] > 100.0  # sessions did end inside the episode
    assert kpis["ev_unmet_kwh"] <= 40 * WH_PER_HOME


def test_shield_summary_is_the_fleet_totals_as_plain_floats():
    from vpprl.envs.devices import DEVICE_CLASSES

    env = env_for(6, n=12)
    env.reset(seed=0)
    res = Shield().project(env.fleet, np.full((NUM_DEVICE_CLASSES, 12), 1e6))  # far above every device's limit
    summary = res.summary()
    for j, name in enumerate(DEVICE_CLASSES):  # the totals, summed here by hand from the per-home arrays
        assert summary[f"shield/{name}/moved_kw"] == pytest.approx(sum(float(x) for x in res.moved_kw[j]))
        assert summary[f"shield/{name}/interventions"] == sum(bool(x) for x in res.intervened[j])
    assert summary["shield/battery/interventions"] > 0
    assert len(summary) == 2 * len(DEVICE_CLASSES) + 2
    assert type(summary) is dict and all(type(v) is float for v in summary.values())  # no arrays kept in infos
