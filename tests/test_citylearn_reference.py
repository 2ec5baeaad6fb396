"""vpprl on CityLearn's own data against CityLearn 3.0.2 itself.

The fixture (``tests/fixtures/citylearn_reference/``, made by ``make_fixture.py`` in a CityLearn 3.0.2
environment; the command and every schema change are in its docstring) holds CityLearn's per-step building
net loads, battery SoCs and its ``evaluate()`` KPIs for three battery schedules on the bundled 2022 data
(1,460 hours from the first row; EV chargers idle). vpprl runs the same schedules and must reproduce
CityLearn's trajectories and KPIs, and its CityLearn 2022 challenge score must equal the challenge's
published formula applied to CityLearn's own series.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from vpprl.envs import FleetConfig, Ownership, VppEnv
from vpprl.envs.devices import inverse_map_action
from vpprl.envs.fleet import BATTERY, EV
from vpprl.training.evaluation import citylearn_score

FIXTURE = Path(__file__).parent / "fixtures" / "citylearn_reference" / "citylearn_3_0_2.json.gz"
SCENARIOS = ("zero", "moderate", "full")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(gzip.open(FIXTURE).read())


@pytest.fixture(scope="module")
def vpprl_runs(reference) -> dict:
    """Each scenario run through VppEnv: per-step home net loads and SoCs, and the episode KPIs."""
    steps = reference["meta"]["evaluated_steps"]
    fleet = FleetConfig(ownership=Ownership(battery=1.0, ev=1.0, pv=1.0, water_heater=0.0, thermostat=0.0,
                                            flex_load=0.0))
    env = VppEnv(dataset="citylearn_2022", task="price_arbitrage", fleet=fleet, episode_hours=float(steps),
                 dt_s=3600)
    env.set_start_day(0)
    runs = {}
    for name in SCENARIOS:
        battery_actions = np.asarray(reference["scenarios"][name]["battery_actions_applied"], dtype=np.float32)
        env.reset(seed=0)
        f = env.fleet
        net, soc, info = [], [], {}
        for t in range(steps):
            lo, default, hi = f.action_ranges()
            action = np.zeros((env.n, lo.shape[0]), np.float32)
            action[:, BATTERY] = battery_actions[t]  # CityLearn 3: a fraction of nominal power, as vpprl's
            action[:, EV] = inverse_map_action(np.zeros(env.n), lo[EV], default[EV], hi[EV])  # charger idle
            _, _, _, _, info = env.step(action)
            net.append(f.last_outcome.net_kw.astype(float))
            soc.append(f.battery.soc.astype(float))
        runs[name] = {"net": np.array(net), "soc": np.array(soc), "kpis": info["kpis"],
                      "names": list(f.profiles.names), "degraded": f.battery.degraded_capacity_kwh.astype(float)}
    return runs


@pytest.mark.parametrize("name", SCENARIOS)
def test_building_trajectories_match_citylearn(reference, vpprl_runs, name):
    """Every building's net load and battery SoC at every step, and its battery's faded capacity."""
    run = vpprl_runs[name]
    ref = reference["scenarios"][name]["buildings"]
    for k, building in enumerate(run["names"]):
        np.testing.assert_allclose(run["net"][:, k], ref[building]["net_electricity_consumption"], rtol=1e-4,
                                   atol=2e-4, err_msg=f"{name}: {building} net load")
        np.testing.assert_allclose(run["soc"][:, k], ref[building]["electrical_storage_soc"], atol=2e-5,
                                   err_msg=f"{name}: {building} battery SoC")
        assert run["degraded"][k] == pytest.approx(ref[building]["battery_final_degraded_capacity"], abs=1e-5)


def _citylearn_kpi(reference: dict, scenario: str, cost_function: str) -> float:
    rows = [r for r in reference["scenarios"][scenario]["evaluate"]
            if r["level"] == "district" and r["cost_function"] == cost_function]
    assert len(rows) == 1, cost_function
    return float(rows[0]["value"])


@pytest.mark.parametrize("name", ["moderate", "full"])
def test_kpis_match_citylearn_evaluate(reference, vpprl_runs, name):
    """KPIs whose definitions CityLearn 3.0.2 shares with vpprl, against its own ``evaluate()``: 1 - load
    factor over 730-hour blocks and the all-time peak of the district, each relative to the buildings
    without storage (here: the zero schedule)."""
    mine, base = vpprl_runs[name]["kpis"], vpprl_runs["zero"]["kpis"]
    assert mine["one_minus_load_factor_730h"] / base["one_minus_load_factor_730h"] == pytest.approx(
        _citylearn_kpi(reference, name, "monthly_one_minus_load_factor_average"), rel=2e-4)
    assert mine["peak_kw"] / base["peak_kw"] == pytest.approx(
        _citylearn_kpi(reference, name, "all_time_peak_average"), rel=2e-4)


def challenge_2022_score(reference: dict, scenario: str) -> float:
    """The CityLearn 2022 challenge score written out from its published definition (AIcrowd, "Update to
    Evaluation and Leaderboard"; CityLearn 1.3 ``evaluate``) on CityLearn's own series: price clipped on the
    district net, emissions clipped per building and step, ramping |change| of the district net, 1 - load
    factor over 730-step blocks; each over the buildings without storage."""
    price = np.asarray(reference["series"]["electricity_pricing"])
    carbon = np.asarray(reference["series"]["carbon_intensity"])
    sc = reference["scenarios"][scenario]
    buildings = np.array([b["net_electricity_consumption"] for b in sc["buildings"].values()])
    baseline = np.array([b["net_electricity_consumption_without_storage"] for b in sc["buildings"].values()])

    def parts(net: np.ndarray) -> np.ndarray:
        district = net.sum(axis=0)
        blocks = [district[i:i + 730] for i in range(0, len(district), 730)]
        return np.array([np.maximum(price * district, 0).sum(), np.maximum(carbon * net, 0).sum(),
                         np.abs(np.diff(district)).sum(), np.mean([1 - b.mean() / b.max() for b in blocks])])

    c, g, r, lf = parts(buildings) / parts(baseline)
    return (c + g + (r + lf) / 2) / 3


@pytest.mark.parametrize("name", ["moderate", "full"])
def test_citylearn_score_is_the_2022_challenge_score(reference, vpprl_runs, name):
    expected = challenge_2022_score(reference, name)
    assert expected == pytest.approx(
        reference["recomputed_by_make_fixture"]["scenarios"][name]["challenge_2022_v1_3"]["score"], rel=1e-6)
    assert citylearn_score(vpprl_runs[name]["kpis"], vpprl_runs["zero"]["kpis"]) == pytest.approx(expected, rel=2e-4)
