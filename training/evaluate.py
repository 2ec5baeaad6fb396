"""``vpprl-evaluate``: every policy on the same scenarios and seeds -> KPI table (markdown + CSV) and
dispatch plots in Hydra's run directory (optionally to TensorBoard too).

    vpprl-evaluate                                   # default scenario, price arbitrage, 100 homes, 3 seeds
    vpprl-evaluate task=peak_shaving num_homes=50 'policies=[no_control,rule_based,oracle]'
    vpprl-evaluate dataset=citylearn_2022 dt_s=3600    # the bundled CityLearn 2022 data (or any CityLearn dir)
    vpprl-evaluate checkpoint=outputs/<run>/checkpoint  # a trained policy beside the yardsticks
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ..agents.policy import Policy
from ..envs import VppEnv
from .checkpoints import check_policy_checkpoint, check_scenario, load_policy
from .cli import check_known_keys, user_errors
from .evaluation import (
    EvaluateConfig,
    add_comparisons,
    make_env,
    make_policy,
    rollout,
    summarize,
    write_table,
)
from .plots import dispatch_figures
from .progress import bar, logs_above

ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)
log = logging.getLogger("vpprl.evaluate")


def run(cfg: EvaluateConfig, extra: dict[str, Policy] | None = None,
        env: VppEnv | None = None) -> tuple[str, list[dict]]:
    """Evaluate ``cfg.policies`` plus ``extra`` (name -> policy, e.g. a trained one) and write the outputs
    under ``cfg.output_dir``; returns (markdown table, summary). ``env``: one :func:`make_env` built already."""
    out = Path(cfg.output_dir)
    env = env or make_env(cfg)
    if cfg.checkpoint:
        name, policy = load_policy(cfg.checkpoint)
        extra = {**(extra or {}), name: policy}
    rows, first_traces = [], {}
    names = list(cfg.policies) + list(extra or {})
    records: dict[str, list] = {name: [] for name in names}
    per_home: dict[str, dict] = {}
    progress = bar(len(cfg.seeds) * len(names), "evaluate", unit="episode")
    with logs_above(progress):
        for i, seed in enumerate(cfg.seeds):
            day = cfg.start_day(i)
            for name in names:
                policy = extra[name] if extra and name in extra else make_policy(name, cfg)
                row, trace = rollout(env, policy, seed, day)
                row["policy"] = name
                rows.append(row)
                if i == 0:
                    first_traces[name] = trace
                if cfg.program:
                    records[name] += env.task("demand_response").event_records()
                    totals = per_home.setdefault(name, {k: 0.0 for k in trace["per_home"]})
                    for key, value in trace["per_home"].items():
                        totals[key] = totals[key] + value
                log.info("seed %d %-26s return %12.2f  (%.1f s)", seed, name, row["return"], row["wall_s"])
                progress.set_postfix(seed=seed, policy=name, ret=f"{row['return']:.2f}", refresh=False)
                progress.update()
    add_comparisons(rows)
    summary = summarize(rows, names)
    source = cfg.dataset or "default scenario"
    title = f"{cfg.task}, {env.n} homes, {cfg.episode_hours:g} h at {cfg.dt_s} s, {len(cfg.seeds)} seeds, {source}"
    text = write_table(summary, rows, out, title)
    if cfg.plots:
        dispatch_figures(first_traces, out / "plots", cfg.task)
    if cfg.program:
        settled, vpp = settlement(cfg, env, records, per_home)
        text += "\n" + settled
    else:
        vpp = []
    if cfg.tensorboard:
        _to_tensorboard(out, summary, first_traces, vpp)
    return text, summary


def settlement(cfg: EvaluateConfig, env: VppEnv, records: dict, per_home: dict) -> tuple[str, list[dict]]:
    """The settlement report under ``cfg.program`` (see ``training.settlement``); each home is enrolled with its
    battery's discharge rating (0 without one)."""
    from ..envs.programs import load_program
    from .settlement import report

    b = env.fleet.battery
    enrolled = np.where(b.owned, b.params.max_discharge_kw, 0.0).astype(np.float64)
    text, vpp, _ = report(load_program(cfg.program), records, per_home, enrolled, Path(cfg.output_dir), cfg.plots)
    return text, vpp


def check_market(cfg: EvaluateConfig, env: VppEnv) -> list[str]:
    """FERC Order 2222 eligibility of the scenario's bids in ``cfg.market`` on ``cfg.bid_date()`` (refused unless
    ``market_override``). Under ``program=`` the DR events are the utility programme's (retail), not a bid. The aggregation's size is the fleet's flexible nameplate: battery discharge, charger,
    water-heater element and heat-pump kW."""
    from ..envs.markets import check_eligibility, load_market

    f = env.fleet
    kw = float(f.battery.params.max_discharge_kw.sum() + f.ev.params.max_charge_kw.sum()
               + f.water_heater.params.element_kw.sum() + f.thermostat.params.heat_pump_kw.sum())
    tasks = [t.strip() for t in cfg.task.split("+")]
    if cfg.program:  # DR events called by a utility's programme are settled retail, not bid into the market
        tasks = [t for t in tasks if t != "demand_response"]
    return check_eligibility(load_market(cfg.market), tasks, cfg.bid_date(), kw, cfg.market_override)


def _to_tensorboard(out: Path, summary: list[dict], traces: dict, settlement_rows: list[dict]) -> None:
    import matplotlib.image as mpimg
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    for s in summary:
        for key, value in s.items():
            if isinstance(value, float) and value == value:
                writer.add_scalar(f"eval/{s['policy']}/{key}", value, 0)
    for s in settlement_rows:
        for key, value in s.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                writer.add_scalar(f"settlement/{s['policy']}/{key}", float(value), 0)
    for png in sorted((out / "plots").glob("*.png")):
        writer.add_image(f"plots/{png.stem}", mpimg.imread(png)[..., :3], 0, dataformats="HWC")
    writer.close()


@hydra.main(config_path="pkg://vpprl.configs.evaluate", config_name="evaluate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    with user_errors("vpprl-evaluate"):
        check_known_keys(cfg, EvaluateConfig)
        obj: EvaluateConfig = OmegaConf.to_object(cfg)  # runs the schema's validation
        env = make_env(obj)  # loads the data, checks the start days against it
        if obj.market:
            for note in check_market(obj, env):
                log.warning("%s", note)
        if obj.checkpoint:
            run_cfg = check_policy_checkpoint("checkpoint", obj.checkpoint)
            for note in check_scenario("checkpoint", run_cfg, obj.task, obj.dt_s, env.n):
                log.warning("%s", note)
    if obj.output_dir == ".":
        obj.output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    text, _ = run(obj, env=env)
    log.info("%s", text)
    log.info("outputs:     %s (kpis.md, kpis.csv, kpis_summary.csv%s%s)", obj.output_dir,
             ", settlement.md, settlement_vpp.csv, settlement_participants.csv" if obj.program else "",
             ", plots/" if obj.plots else "")
    if obj.tensorboard:
        log.info("tensorboard: tensorboard --logdir %s", Path(obj.output_dir) / "tensorboard")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
