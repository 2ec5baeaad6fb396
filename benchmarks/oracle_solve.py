"""Oracle (perfect-foresight LP, HiGHS) build + solve time for a day at 15-minute steps.

    python benchmarks/oracle_solve.py [--homes 100 1000] [--tasks price_arbitrage peak_shaving]

Prints a table and writes benchmarks/results/oracle_solve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vpprl.agents.oracle import Oracle
from vpprl.envs import VppEnv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--tasks", nargs="+", default=["price_arbitrage", "peak_shaving"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "oracle_solve.json"))
    args = ap.parse_args()
    rows = []
    print(f"{'task':18s} {'homes':>6s} {'steps':>6s} {'LP vars':>10s} {'solve s':>8s} {'build+solve s':>14s}")
    for task in args.tasks:
        for n in args.homes:
            env = VppEnv(task=task, num_homes=n, seed=0, start_day=20, episode_hours=24.0, dt_s=900)
            env.reset(seed=0)
            oracle = Oracle()
            t0 = time.perf_counter()
            oracle.reset(env)
            total = time.perf_counter() - t0
            row = {"task": task, "homes": n, "steps": env.episode_steps, "lp_vars": oracle.plan.n_vars,
                   "solve_s": oracle.plan.solve_s, "total_s": total}
            rows.append(row)
            print(f"{task:18s} {n:6d} {env.episode_steps:6d} {row['lp_vars']:10,d} {row['solve_s']:8.2f} {total:14.2f}",
                  flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
