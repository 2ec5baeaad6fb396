"""vpprl-evaluate: output files exist with sane numbers; bad configs fail at start-up."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from vpprl.training.evaluate import run
from vpprl.training.evaluation import EvaluateConfig


def test_evaluation_writes_table_and_plots(tmp_path):
    """The comparison columns recomputed by hand from the per-episode KPIs in kpis.csv: the savings share
    from the returns, and the CityLearn 2022 score from its published definition (1/3 cost + 1/3 emissions
    + 1/6 ramping + 1/6 (1 - load factor over 730-hour blocks), each relative to no control)."""
    cfg = EvaluateConfig(num_homes=10, seeds=[0, 1], episode_hours=12.0, output_dir=str(tmp_path),
                         policies=["no_control", "rule_based", "oracle"])
    text, summary = run(cfg)
    by = {s["policy"]: s for s in summary}
    assert by["oracle"]["return"] >= by["rule_based"]["return"] >= by["no_control"]["return"] - 1e-6
    rows = list(csv.DictReader(open(tmp_path / "kpis.csv")))
    assert len(rows) == 2 * 3 and all(float(r["energy_cost"]) > 0 for r in rows)
    shares, scores = [], []
    for seed in ("0", "1"):
        ep = {r["policy"]: {k: float(v) for k, v in r.items() if k not in ("policy", "start_day")}
              for r in rows if r["seed"] == seed}
        nc, rb, orc = ep["no_control"], ep["rule_based"], ep["oracle"]
        shares.append((rb["return"] - nc["return"]) / (orc["return"] - nc["return"]))
        scores.append(rb["citylearn_cost"] / nc["citylearn_cost"] / 3
                      + rb["emissions_kg"] / nc["emissions_kg"] / 3 + rb["ramping_kw"] / nc["ramping_kw"] / 6
                      + rb["one_minus_load_factor_730h"] / nc["one_minus_load_factor_730h"] / 6)
        assert float(next(r for r in rows if r["seed"] == seed and r["policy"] == "rule_based")[
            "oracle_savings_captured"]) == pytest.approx(shares[-1], rel=1e-9)
    assert by["rule_based"]["oracle_savings_captured"] == pytest.approx(np.mean(shares), rel=1e-9)
    assert by["rule_based"]["citylearn_score"] == pytest.approx(np.mean(scores), rel=1e-9)
    assert 0.0 < np.mean(shares) < 1.0  # rules save something, less than perfect foresight
    for name in ("kpis.md", "kpis.csv", "kpis_summary.csv"):
        assert (tmp_path / name).stat().st_size > 0
    for png in ("aggregate_load", "battery_soc", "indoor_temperature", "ev_energy"):
        assert (tmp_path / "plots" / f"{png}.png").stat().st_size > 10_000
    assert "| oracle |" in text


def test_config_validation():
    with pytest.raises(ValueError, match=r"policies: unknown \['ppo'\]"):
        EvaluateConfig(policies=["ppo"])
    with pytest.raises(ValueError, match="start_days must have 1 or len"):
        EvaluateConfig(seeds=[0, 1, 2], start_days=[1, 2])


def test_hydra_app_runs_and_rejects_bad_values(tmp_path):
    base = [sys.executable, "-m", "vpprl.training.evaluate", f"hydra.run.dir={tmp_path}"]
    ok = subprocess.run(base + ["num_homes=5", "seeds=[0]", "episode_hours=4", "plots=false",
                                "policies=[no_control,rule_based]", "ownership.thermostat=0", "ownership.ev=1"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "kpis.md").exists()
    bad = subprocess.run(base + ["num_homes=many"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "num_homes" in bad.stderr
    typo = subprocess.run(base + ["num_hoems=5"], capture_output=True, text=True, timeout=300)
    assert typo.returncode != 0 and "num_hoems" in typo.stderr
    out_of_range = subprocess.run(base + ["ownership.ev=2"], capture_output=True, text=True, timeout=300)
    assert out_of_range.returncode != 0 and "FleetConfig.ownership.ev must be in [0, 1]" in out_of_range.stderr


def test_tensorboard_gets_kpis_and_figures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = EvaluateConfig(num_homes=5, seeds=[0], episode_hours=4.0, output_dir=str(tmp_path), tensorboard=True,
                         policies=["no_control", "rule_based"])
    run(cfg)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert "eval/rule_based/energy_cost" in tags["scalars"]
    assert "plots/aggregate_load" in tags["images"]


def test_rollout_and_dispatcher_refuse_an_env_of_several_fleets():
    """An env simulating two fleets in one pass (training's fleets-in-one-pass) has no single KPI row or
    dispatch cycle: both stop at once, naming the caller and the number of fleets."""
    from vpprl.agents.rule_based import RuleBased
    from vpprl.deployment.dispatch_loop import Dispatcher
    from vpprl.envs import VppEnv
    from vpprl.training.evaluation import rollout

    env = VppEnv(num_homes=2, fleet_seeds=[0, 1])
    with pytest.raises(ValueError, match=r"rollout: the env simulates 2 fleets in one pass \(fleet_seeds\)"):
        rollout(env, RuleBased(), seed=0, start_day=None)
    with pytest.raises(ValueError, match=r"Dispatcher: the twin simulates 2 fleets in one pass \(fleet_seeds\)"):
        Dispatcher(env, RuleBased(), links={}, journal=None)
