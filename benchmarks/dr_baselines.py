"""What each customer baseline credits against what the homes really shed.

    python benchmarks/dr_baselines.py [--homes 100]

100 homes (held-out fleet, seed 1000), demand response on three held-out weekdays (days 30, 100, 205), no
control and the rule-based policy (which pre-conditions before events). For each baseline method it prints
the credited reduction (CBL - metered) and the simulator's counterfactual reduction (own-control load -
metered, not meterable), and writes benchmarks/results/dr_baselines.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results

EPISODES = ((0, 30), (1, 100), (2, 205))


def main() -> None:
    from vpprl.agents.policy import NoControl
    from vpprl.agents.rule_based import RuleBased
    from vpprl.envs import FleetConfig, VppEnv
    from vpprl.envs.tasks.demand_response import LOOKBACK_DAYS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS_DIR / "dr_baselines.json"))
    args = ap.parse_args()
    rows = []
    print(f"{'baseline':18s} {'policy':12s} {'credited kWh':>13s} {'really shed kWh':>16s} {'credited/shed':>14s}")
    for base in sorted(LOOKBACK_DAYS):
        for policy in (NoControl(), RuleBased()):
            credited = shed = 0.0
            for seed, day in EPISODES:
                env = VppEnv(task={"demand_response": {"baseline": base}}, days="held_out", start_day=day,
                             fleet=FleetConfig(num_homes=args.homes, seed=1000))
                obs, _ = env.reset(seed=seed)
                policy.reset(env)
                for _ in range(env.episode_steps):
                    obs, _, _, _, info = env.step(policy.act(obs))
                credited += info["kpis"]["dr_credited_kwh"]
                shed += info["kpis"]["dr_counterfactual_kwh"]
            ratio = credited / shed if abs(shed) > 1e-9 else float("nan")
            rows.append({"baseline": base, "policy": policy.name, "credited_kwh": credited, "shed_kwh": shed,
                         "ratio": ratio})
            print(f"{base:18s} {policy.name:12s} {credited:13.1f} {shed:16.1f} {ratio:14.2f}")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
