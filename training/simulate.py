"""``vpprl-simulate``: run the default scenario (or a CityLearn dataset) with every device left to
its own control (the zero action) and print the episode KPIs of each grid-service task.

This is the uncontrolled reference that every controller is measured against; training
(``vpprl-train``) replaces the zero action with a learned policy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..envs import ENV_IDS, VppEnv
from .cli import user_errors


def make_env(task: str, num_homes: int, seed: int, days: float, dataset: str | None) -> VppEnv:
    kwargs = {"task": task, "num_homes": num_homes, "seed": seed}
    if task != "frequency_regulation":
        kwargs["episode_hours"] = 24.0 * days
    if dataset:
        kwargs.update(dataset=dataset, dt_s=3600 if task != "frequency_regulation" else 4)
    return VppEnv(**kwargs)


def run(env: VppEnv, task: str, seed: int) -> dict:
    env.reset(seed=seed)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    t0 = time.perf_counter()
    total, info = 0.0, {}
    for _ in range(env.episode_steps):
        _, reward, _, truncated, info = env.step(zero)
        total += reward
    elapsed = time.perf_counter() - t0
    return {"task": task, "homes": env.n, "steps": env.episode_steps, "return_per_home": total,
            "home_steps_per_s": env.n * env.episode_steps / elapsed, **info["kpis"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--days", type=float, default=7.0, help="episode length (frequency regulation: 1 hour)")
    ap.add_argument("--dataset", default=None, help="a CityLearn-format dataset directory")
    ap.add_argument("--json", default=None, help="also write the KPI rows to this file")
    args = ap.parse_args(argv)
    with user_errors("vpprl-simulate"):  # every env is built (and so checked) before any runs
        if not 0 < args.days <= 366:
            raise ValueError(f"--days must be in (0, 366], got {args.days}")
        if not args.seed >= 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        if args.json and not Path(args.json).resolve().parent.is_dir():
            raise FileNotFoundError(f"--json: no directory {Path(args.json).resolve().parent} to write into")
        envs = {task: make_env(task, args.homes, args.seed, args.days, args.dataset) for task in ENV_IDS.values()}
    rows = [run(env, task, args.seed) for task, env in envs.items()]
    keys = ["energy_cost", "peak_kw", "load_factor", "ramping_kw", "emissions_kg", "discomfort_degh",
            "dhw_discomfort_degh", "ev_unmet_kwh", "home_steps_per_s"]
    print(f"No-control KPIs, {rows[0]['homes']} homes, seed {args.seed}"
          f"{', dataset ' + args.dataset if args.dataset else ', default scenario'}")
    print("| task | steps | " + " | ".join(keys) + " | task KPIs |")
    print("|---" * (len(keys) + 3) + "|")
    for r in rows:
        extra = {k: round(v, 3) for k, v in r.items()
                 if k.startswith(("feeder_", "dr_", "reg_")) and isinstance(v, float)}
        print(f"| {r['task']} | {r['steps']} | " + " | ".join(f"{r[k]:,.2f}" for k in keys) + f" | {extra} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
