"""Run policies on the same scenarios and seeds; KPI rows, per-step traces, the comparison table.

Savings are measured on the env's own objective (the episode return in $, which the oracle
maximises): ``oracle_savings_captured = (R_policy - R_no_control) / (R_oracle - R_no_control)``.
``citylearn_score`` is the CityLearn 2022 challenge score on the episode, so results sit beside the field's
published figures (see :func:`citylearn_score`; lower is better, no control = 1).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..agents.oracle import Mpc, Oracle
from ..agents.policy import NoControl, Policy
from ..agents.rule_based import ChargeOnArrival, RuleBased
from ..data.profiles import G
from ..envs import FleetConfig, Ownership, VppEnv
from ..envs.fleet import EV
from ..envs.programs import task_params_under
from ..envs.scenario import ScenarioConfig

log = logging.getLogger("vpprl.evaluation")

POLICIES = ("no_control", "rule_based", "rule_based_ev_on_arrival", "mpc", "oracle")
TABLE_COLUMNS = ("return", "oracle_savings_captured", "energy_cost", "energy_cost_adjusted", "peak_kw",
                 "load_factor", "ramping_kw", "emissions_kg", "discomfort_degh", "dhw_discomfort_degh",
                 "ev_unmet_kwh", "battery_reserve_kwh_h", "site_limit_kwh", "citylearn_score", "nonfinite_actions",
                 "wall_s")


#: per-home episode totals a rollout keeps (a participant's bill, comfort and EV impact in a settlement report)
HOME_TOTALS = ("energy_cost", "thermal_discomfort_degh", "dhw_discomfort_degh", "ev_unmet_kwh")


def task_dict(task: str, params: dict | None) -> dict:
    """``{task name: its parameters}`` for a '+'-joined task string; parameters of a task not in it are an
    error (they would be ignored)."""
    names = [t.strip() for t in task.split("+")]
    stray = sorted(set(params or {}) - set(names))
    if stray:
        raise ValueError(f"task_params names {stray}, which are not in task={task!r}")
    return {name: dict((params or {}).get(name) or {}) for name in names}


def check_seed(field_name: str, seed: int) -> None:
    """ValueError naming the field unless ``seed`` is an integer in [0, 2**32) (numpy, torch and RLlib
    accept these)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"{field_name} must be an integer in [0, 4294967295], got {seed!r}")


def check_policy_names(field_name: str, names: list[str]) -> None:
    """Raise ValueError naming the field and the valid choices for names that are not yardsticks."""
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"{field_name}: unknown {unknown}; choose from {list(POLICIES)}")


@dataclass
class MpcConfig:
    """Receding-horizon LP settings (hours)."""

    horizon_h: float = 24.0
    replan_every_h: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.replan_every_h <= self.horizon_h <= 24 * 14:
            raise ValueError(f"MpcConfig: need 0 < replan_every_h <= horizon_h <= 336, got "
                             f"replan_every_h={self.replan_every_h}, horizon_h={self.horizon_h}")


@dataclass
class EvaluateConfig:
    """What to evaluate. Validated when converted to this object (``OmegaConf.to_object``).

    :param task: a task name or several joined by '+', e.g. ``price_arbitrage+peak_shaving``.
    :param start_days: days of the year to evaluate; None = a random day per seed.
    :param days: the split the days come from: ``held_out`` (default; see ``envs.splits``), ``train`` or ``all``.
    :param checkpoint: a ``vpprl-train`` checkpoint directory: its policy is evaluated beside ``policies``
        (behind the shield if it trained behind it).
    :param climate: the default scenario's weather: ``greensboro`` (trained on) or a held-out climate
        (``miami``, ``sand_point``).
    :param dataset: a CityLearn-format dataset directory instead of the default scenario.
    :param citylearn_replicate: with a dataset, sample ``num_homes`` homes from its buildings; False (default)
        evaluates one home per building, as published.
    :param ownership: device-ownership probabilities (validated by ``FleetConfig``); e.g.
        ``ownership.thermostat=0 ownership.water_heater=0 ownership.flex_load=0`` for CityLearn 2022's
        controllable devices only.
    """

    task: str = "price_arbitrage"
    num_homes: int = 100
    fleet_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    start_days: list[int] | None = None
    days: str = "held_out"
    climate: str = "greensboro"
    task_params: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    episode_hours: float = 24.0
    dt_s: int = 900
    dataset: str | None = None
    citylearn_replicate: bool = False
    ownership: Ownership = field(default_factory=Ownership)
    fleet: FleetConfig | None = None  # a complete fleet (overrides num_homes, fleet_seed, ownership)
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    mpc: MpcConfig = field(default_factory=MpcConfig)
    plots: bool = True
    tensorboard: bool = False
    output_dir: str = "."
    market: str | None = None  # a grid operator (configs/market/): refuse services it has not opened on market_date
    market_date: str | None = None  # ISO date the aggregation would bid on (None: today)
    market_override: bool = False  # evaluate a service the market has not opened anyway (warned)
    program: str | None = None  # a programme (configs/program/): settle each policy's DR events per participant

    def __post_init__(self) -> None:
        check_policy_names("policies", self.policies)
        if not self.policies:
            raise ValueError("policies must name at least one policy")
        if not 1 <= self.num_homes <= 1_000_000:
            raise ValueError(f"num_homes must be in [1, 1000000], got {self.num_homes}")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        for seed in self.seeds:
            check_seed("seeds", seed)
        check_seed("fleet_seed", self.fleet_seed)
        if self.start_days is not None and len(self.start_days) not in (1, len(self.seeds)):
            raise ValueError(f"start_days must have 1 or len(seeds)={len(self.seeds)} entries")
        ScenarioConfig(tasks=self.tasks(), dt_s=self.dt_s, episode_hours=self.episode_hours, days=self.days,
                       climate=self.climate, dataset=self.dataset)

    def start_day(self, episode: int) -> int | None:
        """The start day of the ``episode``-th seed (None: a random day)."""
        return None if self.start_days is None else self.start_days[min(episode, len(self.start_days) - 1)]

    def tasks(self) -> dict:
        """The tasks and their parameters (a programme's DR event shape and credit filled in, see
        ``envs.programs.task_params_under``)."""
        return task_dict(self.task, task_params_under(self.program, self.task, self.task_params))

    def bid_date(self):
        """The date the market rules are read on (``market_date``, default today); ValueError names the field."""
        import datetime as dt

        if self.market_date is None:
            return dt.date.today()
        try:
            return dt.date.fromisoformat(str(self.market_date))
        except ValueError:
            raise ValueError(f"market_date must be an ISO date (YYYY-MM-DD); got {self.market_date!r}") from None


def make_policy(name: str, cfg: EvaluateConfig) -> Policy:
    if name == "no_control":
        return NoControl()
    if name == "rule_based":
        return RuleBased()
    if name == "rule_based_ev_on_arrival":
        return ChargeOnArrival()
    if name == "mpc":
        return Mpc(horizon_h=cfg.mpc.horizon_h, replan_every_h=cfg.mpc.replan_every_h)
    if name == "oracle":
        return Oracle()
    raise ValueError(f"unknown policy {name!r}; choose from {list(POLICIES)}")


def make_env(cfg: EvaluateConfig, start_days_field: str = "start_days") -> VppEnv:
    """The evaluation env; loads the data and checks every start day against it (errors name the field)."""
    fleet = cfg.fleet or FleetConfig(num_homes=cfg.num_homes, seed=cfg.fleet_seed, ownership=cfg.ownership)
    kwargs: dict[str, Any] = {"task": cfg.tasks(), "fleet": fleet, "episode_hours": cfg.episode_hours,
                              "dt_s": cfg.dt_s, "days": cfg.days, "climate": cfg.climate}
    if cfg.dataset:
        kwargs.update(dataset=cfg.dataset, citylearn_replicate=cfg.citylearn_replicate)
    env = VppEnv(**kwargs)
    for day in cfg.start_days or []:
        env.check_start_day(start_days_field, day)
    return env


def check_one_fleet(caller: str, env: VppEnv) -> None:
    """ValueError unless ``env`` simulates one fleet: a KPI row, a trace and a dispatch cycle are one fleet's
    (an env with K ``fleet_seeds`` runs K fleets on K clocks in one pass, for training)."""
    if env.clocks != 1:
        raise ValueError(f"{caller}: the env simulates {env.clocks} fleets in one pass (fleet_seeds); "
                         f"evaluation scores one fleet: build the env without fleet_seeds")


def rollout(env: VppEnv, policy: Policy, seed: int, start_day: int | None) -> tuple[dict, dict]:
    """One episode: (KPI row, per-step trace for plots). ``start_day`` None keeps the env's choice."""
    check_one_fleet("rollout", env)
    env.set_start_day(start_day)
    env.set_perfect_foresight(policy.sees_future)
    obs, _ = env.reset(seed=seed)
    t0 = time.perf_counter()
    policy.reset(env)
    f = env.fleet
    trace: dict[str, list] = {k: [] for k in ("hour", "aggregate_kw", "baseline_kw", "price", "soc_p10", "soc_p50",
                                               "soc_p90", "temp_p10", "temp_p50", "temp_p90", "ev_delivered_kwh",
                                               "ev_required_kwh", "feeder_limit_kw", "event")}
    ret, info, delivered, required = 0.0, {}, 0.0, 0.0
    own_b, own_t = f.battery.owned, f.thermostat.owned
    per_home = {k: np.zeros(env.n) for k in HOME_TOTALS}
    for _ in range(env.episode_steps):
        hour = (f.seconds % 86400) / 3600.0 + 24.0 * ((f.seconds - f.start_s) // 86400)
        price = float(f.grid[G["price_import"]])
        obs, reward, _, _, info = env.step(policy.act(obs))
        ret += reward * env.n
        out = f.last_outcome
        for key in HOME_TOTALS[1:]:
            per_home[key] += info["costs"][key]
        per_home["energy_cost"] += (np.maximum(out.net_kw, 0.0) * price
                                    - np.maximum(-out.net_kw, 0.0) * float(out.grid[G["price_export"]])) * f.dt_h
        delivered += float(np.maximum(out.device_kw[EV], 0.0).sum()) * f.dt_h  # AC energy into EVs
        required += out.ev_required_kwh_departed  # energy asked for by sessions that ended
        soc = np.percentile(f.battery.soc[own_b], [10, 50, 90]) if own_b.any() else [np.nan] * 3
        temp = np.percentile(f.thermostat.temp_c[own_t], [10, 50, 90]) if own_t.any() else [np.nan] * 3
        for key, value in (("hour", hour), ("aggregate_kw", info["aggregate_kw"]),
                           ("baseline_kw", info["default_aggregate_kw"]), ("price", price),
                           ("soc_p10", soc[0]), ("soc_p50", soc[1]), ("soc_p90", soc[2]),
                           ("temp_p10", temp[0]), ("temp_p50", temp[1]), ("temp_p90", temp[2]),
                           ("ev_delivered_kwh", delivered), ("ev_required_kwh", required),
                           ("feeder_limit_kw", info.get("feeder_limit_kw", np.nan)),
                           ("event", info.get("dr_event_active", 0.0))):
            trace[key].append(float(value))
    row = {"policy": policy.name, "seed": seed, "start_day": start_day, "return": ret,
           "wall_s": time.perf_counter() - t0, **info["kpis"]}
    if row["nonfinite_actions"]:
        log.warning("policy %s sent %d NaN/inf action entries (seed %d): the devices followed their own control "
                    "there; see nonfinite_actions in the KPI table", policy.name, row["nonfinite_actions"], seed)
    trace = {k: np.asarray(v) for k, v in trace.items()}
    trace["per_home"] = per_home
    return row, trace


def add_comparisons(rows: list[dict]) -> None:
    """Add oracle savings share and the CityLearn-style score, per (seed, start_day) episode."""
    episodes: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        episodes.setdefault((r["seed"], r["start_day"]), {})[r["policy"]] = r
    for by_policy in episodes.values():
        base = by_policy.get("no_control")
        best = by_policy.get("oracle")
        for r in by_policy.values():
            r["oracle_savings_captured"] = float("nan")
            r["citylearn_score"] = float("nan")
            if base is None:
                continue
            if best is not None and abs(best["return"] - base["return"]) > 1e-9:
                r["oracle_savings_captured"] = (r["return"] - base["return"]) / (best["return"] - base["return"])
            r["citylearn_score"] = citylearn_score(r, base)


def citylearn_score(kpis: dict, baseline: dict) -> float:
    """The CityLearn 2022 challenge score of an episode: (C + G + (R + L) / 2) / 3, each term the policy's
    value over the baseline's (AIcrowd, "Update to Evaluation and Leaderboard", 2022; CityLearn 1.3's
    ``evaluate``): C price cost clipped on the district net (``citylearn_cost``), G emissions clipped per home
    and step (``emissions_kg``), R ramping sum of |change| of the district net (``ramping_kw``), L the mean
    1 - load factor over 730-hour blocks (``one_minus_load_factor_730h``). The challenge's baseline is the
    buildings without storage: here the no-control episode (devices under their own control)."""
    keys = ("citylearn_cost", "emissions_kg", "ramping_kw", "one_minus_load_factor_730h")
    c, g, r, lf = (kpis[k] / baseline[k] if baseline[k] else float("nan") for k in keys)
    return float((c + g + (r + lf) / 2.0) / 3.0)


def summarize(rows: list[dict], policies: list[str]) -> list[dict]:
    """Mean over episodes of each table column, per policy, in the requested order."""
    out = []
    for name in policies:
        mine = [r for r in rows if r["policy"] == name]
        if not mine:
            continue
        summary = {"policy": name, "episodes": len(mine)}
        for col in TABLE_COLUMNS:
            vals = [r.get(col, np.nan) for r in mine]
            summary[col] = float(np.nanmean(vals)) if not all(np.isnan(vals)) else float("nan")
        out.append(summary)
    return out


def write_table(summary: list[dict], rows: list[dict], out_dir: Path, title: str) -> str:
    """Write kpis.csv (every episode), kpis_summary.csv and kpis.md; return the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "kpis.csv", "w", newline="") as fh:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("policy", "seed", "start_day"), k))
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with open(out_dir / "kpis_summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["policy", "episodes", *TABLE_COLUMNS])
        writer.writeheader()
        writer.writerows(summary)
    lines = [f"# {title}", "", "| policy | " + " | ".join(TABLE_COLUMNS) + " |",
             "|---|" + "---|" * len(TABLE_COLUMNS)]
    for s in summary:
        cells = []
        for col in TABLE_COLUMNS:
            v = s[col]
            cells.append("n/a" if v != v else (f"{100 * v:.1f} %" if col == "oracle_savings_captured" else f"{v:,.3f}"))
        lines.append(f"| {s['policy']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out_dir / "kpis.md").write_text(text)
    return text
