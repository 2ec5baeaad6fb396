"""End-to-end RLlib PPO training throughput (sampling + learning), home-steps per second.

    python benchmarks/train_throughput.py [--iterations 6] [--quick]

Compares, in one run on this machine, the two ways of feeding RLlib the same shared-parameter
multi-agent problem (one policy for every home, per-home rewards and advantages):

* ``per_agent``: ``VppMultiAgentEnv``, one RLlib agent per home (RLlib's plain MultiAgentEnv path);
* ``home_batch``: ``VppHomeBatchEnv``, the fleet as one env whose rows are homes, with the per-home
  GAE learner connector (``vpprl.training.rllib_home_batch``); an env runner's 16 fleets either as 16
  separate envs (``fleets=separate``) or simulated in one pass (``one_pass``: ``agent.fleets_in_one_pass``).

Same PPO settings (4 epochs, minibatches of 4,096 home-steps, [64, 64] networks, shield on), local env
runner, torch on this machine's cores. The first iteration (warm-up) is excluded. Prints a table and
writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results


def measure(name: str, homes: int, envs: int, home_batch: bool, batch: int, iterations: int,
            one_pass: str = "off") -> dict:
    import ray
    from vpprl.deployment import Shield
    from vpprl.envs import FleetConfig
    from vpprl.training.config import AgentConfig, TrainConfig
    from vpprl.training.rllib_adapter import build_algorithm, train_iteration

    agent = AgentConfig(train_batch_size=batch, minibatch_size=min(batch, 4096), num_epochs=4,
                        home_batch=home_batch, num_envs_per_env_runner=envs, fleets_in_one_pass=one_pass)
    cfg = TrainConfig(fleet=FleetConfig(num_homes=homes, seed=0), agent=agent)
    algo = build_algorithm(cfg, Shield())
    try:
        start = train_iteration(algo, cfg)["home_steps"]  # warm-up: env creation, first episodes, torch init
        t0 = time.perf_counter()
        end = start
        for _ in range(iterations):
            end = train_iteration(algo, cfg)["home_steps"]
        elapsed = time.perf_counter() - t0
    finally:
        algo.stop()
        ray.shutdown()
    per_iteration = (end - start) / iterations
    rate = (end - start) / elapsed
    return {"path": name, "homes": homes, "envs_per_runner": envs, "fleets": "one_pass" if one_pass == "on" else "separate", "home_steps_per_iteration": per_iteration,
            "iterations_timed": iterations, "seconds": elapsed, "home_steps_per_s": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations per case (after one warm-up)")
    ap.add_argument("--quick", action="store_true", help="small batches, for a smoke run")
    ap.add_argument("--out", default=str(RESULTS_DIR / "train_throughput.json"))
    args = ap.parse_args()
    scale = 4 if args.quick else 1
    cases = [  # (name, homes, envs per runner, home_batch, home-steps per iteration, fleets in one pass)
        ("per_agent", 20, 1, False, 7680 // scale, "off"),
        ("home_batch", 20, 1, True, 30720 // scale, "off"),
        ("home_batch", 20, 16, True, 30720 // scale, "off"),
        ("home_batch", 20, 16, True, 30720 // scale, "on"),
        ("home_batch", 500, 1, True, 96000 // scale, "off"),
        ("per_agent", 500, 1, False, 24000 // scale, "off"),
    ]
    from vpprl.training.progress import bar

    rows = [measure(*case[:5], iterations=args.iterations, one_pass=case[5])
            for case in bar(None, "cases", unit="case", iterable=cases)]
    base = rows[0]["home_steps_per_s"]
    print(f"\n{'path':>11s} {'homes':>6s} {'fleets':>6s} {'how':>9s} {'home-steps/it':>14s} {'home-steps/s':>13s} "
          f"{'vs per_agent':>13s}")
    for r in rows:
        r["speedup_vs_per_agent"] = r["home_steps_per_s"] / base
        print(f"{r['path']:>11s} {r['homes']:6d} {r['envs_per_runner']:6d} {r['fleets']:>9s} "
              f"{r['home_steps_per_iteration']:14,.0f} "
              f"{r['home_steps_per_s']:13,.0f} {r['speedup_vs_per_agent']:12.1f}x")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
