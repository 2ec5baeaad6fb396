"""Oracle (perfect-foresight LP, HiGHS) build + solve time for a day at 15-minute steps.

    python benchmarks/oracle_solve.py [--homes 100 1000] [--tasks price_arbitrage peak_shaving]

Prints a table and writes benchmarks/results/oracle_solve.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results
from vpprl.agents.oracle import Oracle
from vpprl.envs import VppEnv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--tasks", nargs="+", default=["price_arbitrage", "peak_shaving"])
    ap.add_argument("--out", default=str(RESULTS_DIR / "oracle_solve.json"))
    args = ap.parse_args()
    rows = []
    print(f"{'task':18s} {'homes':>6s} {'steps':>6s} {'LP vars':>10s} {'solve s':>8s} {'build+solve s':>14s}")
    for task in args.tasks:
        for n in args.homes:
            env = VppEnv(task=task, num_homes=n, seed=0, start_day=20, episode_hours=24.0, dt_s=900)
            env.set_perfect_foresight(True)
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
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
