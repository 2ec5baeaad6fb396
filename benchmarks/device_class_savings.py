"""Which device class a trained policy leaves savings on: its share of the oracle's savings, one class at a time.

    python benchmarks/device_class_savings.py [--checkpoint DIR] [--homes 50] [--days 30 100 205] [--mpc]

``--checkpoint``: a ``vpprl-train`` checkpoint directory (RLlib); by default the newest ``outputs/*/*/checkpoint``
under the current directory (where ``vpprl-train`` writes its runs).

The checkpoint's policy (behind the shield it trained behind), the two rule-based baselines, the
perfect-foresight LP oracle and, with ``--mpc``, the receding-horizon LP on forecasts are evaluated on the
default scenario's held-out days (price arbitrage) on held-out fleets (fleet seed 1000) that own **one
controllable device class** (every home owns it; rooftop PV at its default share, since PV is not dispatched),
then on the default mixed fleet. A class where the policy's share
lies far below the oracle's is where learning leaves money; one where the rule does better is where the policy
misses a strategy a hand-written controller already knows. The share is pooled over the episodes (mean return
gain over no control / the oracle's mean gain), as in ``benchmarks/train_quality.py``. The "EV floor" column is
the same policy with every EV's action raised to the observed zero-net action where that is negative (a car
covers its home's load and exports nothing more): the share of the EV gap that is V2G energy exported cheaply.

Prints a table and writes benchmarks/results/device_class_savings.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results

RULES = ("rule_based", "rule_based_ev_on_arrival")
POLICIES = ["no_control", *RULES, "oracle"]
#: ownership of every controllable class set to 0 except the one named (None: the default mixed fleet)
CLASSES = ("battery", "ev", "water_heater", "thermostat", "flex_load", None)
CONTROLLABLE = ("battery", "ev", "water_heater", "thermostat", "flex_load")


def ownership_for(device_class: str | None):
    """Every home owns ``device_class`` and no other controllable class (PV as by default)."""
    from vpprl.envs import Ownership

    if device_class is None:
        return Ownership()
    return Ownership(**{c: (1.0 if c == device_class else 0.0) for c in CONTROLLABLE})


def ev_floored_at_zero_net(policy):
    """``policy`` with each EV's action raised to the observed ``ev_action_to_zero_net`` where that is negative:
    a car may stop charging and discharge to cover its home's load, never beyond (a what-if: how much of the
    EV fleet's gap is discharge exported at the export price)."""
    from vpprl.agents.policy import Policy
    from vpprl.envs.fleet import EV
    from vpprl.envs.observation import HOME_FEATURES

    hint, width = HOME_FEATURES.index("ev_action_to_zero_net"), len(HOME_FEATURES)

    class EvFloor(Policy):
        name = "policy_ev_floor_at_zero_net"

        def reset(self, env) -> None:
            super().reset(env)
            policy.reset(env)

        def act(self, obs):
            n = self.env.n
            action = np.asarray(policy.act(obs), dtype=np.float32).reshape(n, -1).copy()
            floor = np.asarray(obs[: n * width], dtype=np.float32).reshape(n, width)[:, hint]
            action[:, EV] = np.where(floor < 0.0, np.maximum(action[:, EV], floor), action[:, EV])
            return action.ravel()

    return EvFloor()


def evaluate_class(checkpoint: str, device_class: str | None, homes: int, days: list[int], out: Path,
                   mpc: bool = False) -> dict:
    from vpprl.deployment import Shield
    from vpprl.deployment.shielded_policy import ShieldedPolicy
    from vpprl.envs import FleetConfig
    from vpprl.training.evaluate import run
    from vpprl.training.evaluation import EvaluateConfig
    from vpprl.training.rllib_adapter import RllibPolicy

    policy = RllibPolicy(checkpoint=checkpoint)  # loaded once; stateless between steps, so both wrappers share it
    learned = ShieldedPolicy(policy, Shield())
    floored = ShieldedPolicy(ev_floored_at_zero_net(policy), Shield())
    fleet = FleetConfig(num_homes=homes, seed=1000, ownership=ownership_for(device_class))
    cfg = EvaluateConfig(task="price_arbitrage", fleet=fleet, num_homes=homes, seeds=[100 + i for i in range(len(days))],
                         start_days=days, policies=POLICIES + (["mpc"] if mpc else []), plots=False,
                         output_dir=str(out))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        _, summary = run(cfg, extra={"policy": learned, "ev_floor": floored})
    by = {s["policy"]: s["return"] for s in summary}
    gain = {p: by[p] - by["no_control"] for p in by}
    best_rule = max(RULES, key=lambda p: gain[p])
    oracle_gain = gain["oracle"]
    return {"device_class": device_class or "mixed (default)", "homes": homes, "episodes": len(days),
            "oracle_gain_per_home_day": oracle_gain / homes,  # summary returns are means per episode (one day)
            "policy_share": gain["policy"] / oracle_gain if oracle_gain > 0 else float("nan"),
            "ev_floor_share": gain["ev_floor"] / oracle_gain if oracle_gain > 0 else float("nan"),
            "best_rule": best_rule,
            "best_rule_share": gain[best_rule] / oracle_gain if oracle_gain > 0 else float("nan"),
            "mpc_share": gain["mpc"] / oracle_gain if mpc and oracle_gain > 0 else float("nan"),
            "returns": by, "eval_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a vpprl-train checkpoint directory (RLlib); default: the newest "
                    "outputs/*/*/checkpoint under the current directory")
    ap.add_argument("--homes", type=int, default=50, help="homes per held-out fleet")
    ap.add_argument("--days", type=int, nargs="+", default=[30, 100, 205], help="held-out start days (envs.splits)")
    ap.add_argument("--mpc", action="store_true", help="also the receding-horizon LP on forecasts (slower)")
    ap.add_argument("--work-dir", default="/tmp/vpprl_device_class_savings")
    ap.add_argument("--out", default=str(RESULTS_DIR / "device_class_savings.json"))
    args = ap.parse_args()
    if args.checkpoint is None:
        runs = sorted(Path("outputs").glob("*/*/checkpoint"))
        if not runs:
            ap.error(f"no --checkpoint given and no vpprl-train run under {Path('outputs').resolve()} "
                     "(outputs/<date>/<time>/checkpoint): train one first or pass --checkpoint DIR")
        args.checkpoint = str(runs[-1])
        print(f"checkpoint: {args.checkpoint}")
    elif not Path(args.checkpoint).is_dir():
        ap.error(f"--checkpoint {args.checkpoint}: no such directory (a vpprl-train run's checkpoint/)")
    from vpprl.training.progress import bar

    rows = []
    progress = bar(len(CLASSES), "device classes", unit="class")
    for device_class in CLASSES:
        progress.set_postfix(device_class=device_class or "mixed")
        rows.append(evaluate_class(args.checkpoint, device_class, args.homes, args.days,
                                   Path(args.work_dir) / (device_class or "mixed"), args.mpc))
        progress.update()
    progress.close()
    print(f"\nheld-out days {args.days}, held-out fleets of {args.homes} homes owning one controllable class each")
    print(f"{'device class':>16s} {'oracle gain/home-day':>21s} {'policy':>8s} {'EV floor':>9s} {'best rule':>10s} "
          f"{'mpc':>7s} {'rule':>26s}")
    for r in rows:
        print(f"{r['device_class']:>16s} {r['oracle_gain_per_home_day']:21.3f} {100 * r['policy_share']:7.1f}% "
              f"{100 * r['ev_floor_share']:8.1f}% {100 * r['best_rule_share']:9.1f}% {100 * r['mpc_share']:6.1f}% "
              f"{r['best_rule']:>26s}")
    write_results(args.out, [{"checkpoint": args.checkpoint, "days": args.days, "rows": rows}])


if __name__ == "__main__":
    main()
