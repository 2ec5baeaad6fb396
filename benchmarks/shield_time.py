"""Shield time per step: project random (adversarial) setpoints for 1,000 .. 100,000 homes.

    python benchmarks/shield_time.py [--sizes 1000 10000 100000] [--feeder]

Every device class on every home; setpoints are drawn well outside the safe set so every code path
runs (clipping, site-limit projection for the homes that exceed their service limit). With --feeder
a fleet limit binds too, set halfway between the fleet's safe minimum and its request at the start. Prints a table and writes benchmarks/results/shield_time.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results
from vpprl.deployment import Shield, ShieldConfig
from vpprl.envs import FleetConfig, VppEnv
from vpprl.envs.fleet_config import Ownership


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--feeder", action="store_true", help="also bind a fleet (feeder) limit")
    ap.add_argument("--site-limit-kw", type=float, default=25.0, help="service import limit per home")
    ap.add_argument("--residential", action="store_true",
                    help="no C&I flexible loads (every other class on), so service limits can bind")
    ap.add_argument("--out", default=str(RESULTS_DIR / "shield_time.json"))
    args = ap.parse_args()
    all_on = Ownership(battery=1.0, ev=1.0, pv=1.0, water_heater=1.0, thermostat=1.0,
                       flex_load=0.0 if args.residential else 1.0)
    rows = []
    print(f"{'homes':>8s} {'feeder':>7s} {'ms/step':>8s} {'site-limited homes':>19s} {'interventions/step':>19s}")
    for n in args.sizes:
        fleet_cfg = FleetConfig(num_homes=n, ownership=all_on, site_import_limit_kw=args.site_limit_kw)
        env = VppEnv(task="price_arbitrage", fleet=fleet_cfg, episode_hours=8760.0)
        env.reset(seed=0)
        fleet = env.fleet
        rng = np.random.default_rng(0)
        lo, hi = fleet.feasible_power()
        setpoints = [lo + (hi - lo) * rng.uniform(-0.5, 1.5, lo.shape) for _ in range(4)]
        feeder = None
        if args.feeder:  # binding but feasible: halfway between the safe minimum and the request
            safe_lo, safe_hi, _ = Shield().safe_bounds(fleet)
            base = float(fleet.base_load_kw.sum())
            requested = float(np.clip(setpoints[0], safe_lo, safe_hi).sum())
            feeder = base + 0.5 * (float(safe_lo.sum()) + requested)
        shield = Shield(ShieldConfig(feeder_limit_kw=feeder))
        steps, elapsed, interventions, limited = 0, 0.0, 0, 0
        while elapsed < args.seconds or steps < 10:
            sp = setpoints[steps % 4]
            t0 = time.perf_counter()
            res = shield.project(fleet, sp)
            elapsed += time.perf_counter() - t0
            interventions += int(res.intervened.sum())
            net = fleet.base_load_kw + sp.sum(axis=0)
            limited += int((net > fleet.layout.site_import_limit_kw).sum())
            env.step_setpoints(res.setpoints_kw)
            steps += 1
        row = {"homes": n, "feeder_limit": feeder is not None, "site_limit_kw": args.site_limit_kw, "ms_per_step": 1000 * elapsed / steps, "steps": steps,
               "site_limited_homes_per_step": limited / steps, "interventions_per_step": interventions / steps}
        rows.append(row)
        print(f"{n:8d} {row['feeder_limit']!s:>7s} {row['ms_per_step']:8.3f} {row['site_limited_homes_per_step']:19.1f} "
              f"{row['interventions_per_step']:19.1f}", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
