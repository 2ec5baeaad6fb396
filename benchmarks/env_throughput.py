"""Environment throughput and memory: home-steps/s and peak memory at 100 .. 100,000 homes.

Also the training set-up of small fleets (``--small-fleets``, default 16 fleets of 20 homes, price arbitrage,
shield on, ``VppHomeBatchEnv``): the fleets stepped as separate envs (what RLlib's vector env does) against the
same fleets simulated in one pass (``fleets=16``: each its own clock and homes).

Every device class is owned by every home and all costs/KPIs are on. Each fleet size runs in a
fresh subprocess so peak memory (ru_maxrss) is per size. CityLearn runs on vpprl's bundled CityLearn 2022
dataset (decompressed to a temporary folder, since CityLearn reads plain CSVs) in the same run when an interpreter with ``citylearn`` is given (CityLearn 3.0.2 pins
gymnasium 0.28 and numpy 1.26, so it lives in its own venv), and the ratio is reported:

    python -m venv /tmp/cl && /tmp/cl/bin/pip install citylearn==3.0.2
    python benchmarks/env_throughput.py --citylearn-python /tmp/cl/bin/python
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results


def _measure_vpprl(num_homes: int, seconds: float) -> dict:
    import numpy as np
    from vpprl.envs import VppEnv
    from vpprl.envs.fleet_config import FleetConfig, Ownership

    all_on = Ownership(battery=1.0, ev=1.0, pv=1.0, water_heater=1.0, thermostat=1.0, flex_load=1.0)
    t0 = time.perf_counter()
    env = VppEnv(task={"price_arbitrage": {}, "peak_shaving": {}, "demand_response": {}},
                 fleet=FleetConfig(num_homes=num_homes, ownership=all_on), episode_hours=24 * 365)
    build_s = time.perf_counter() - t0
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for _ in range(4)]
    steps = 0
    t0 = time.perf_counter()
    while True:
        env.step(actions[steps % 4])
        steps += 1
        el = time.perf_counter() - t0
        if el > seconds and steps >= 20:
            break
    return {"env": "vpprl VppEnv", "homes": num_homes, "steps": steps, "seconds": el,
            "home_steps_per_s": num_homes * steps / el, "step_ms": 1000 * el / steps, "build_s": build_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure_small_fleets(homes: int, fleets: int, one_pass: bool, seconds: float) -> dict:
    import numpy as np
    from vpprl.deployment import Shield
    from vpprl.envs import VppHomeBatchEnv

    kwargs = {"task": "price_arbitrage", "num_homes": homes, "shield": Shield(), "resample_fleet": True}
    envs = [VppHomeBatchEnv(**kwargs, fleets=fleets)] if one_pass else [VppHomeBatchEnv(**kwargs) for _ in range(fleets)]
    for k, env in enumerate(envs):
        env.reset(seed=k)
    rng = np.random.default_rng(0)
    actions = [[rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for env in envs] for _ in range(4)]
    steps = 0
    t0 = time.perf_counter()
    while True:
        for env, action in zip(envs, actions[steps % 4]):
            *_, terminated, truncated, _ = env.step(action)
            if terminated or truncated:  # a fresh fleet per episode, as in training (resample_fleet)
                env.reset()
        steps += 1
        el = time.perf_counter() - t0
        if el > seconds and steps >= 20:
            break
    name = f"VppHomeBatchEnv {fleets}x{homes} " + ("one pass" if one_pass else "separate")
    return {"env": name, "homes": homes * fleets, "steps": steps, "seconds": el,
            "home_steps_per_s": homes * fleets * steps / el, "step_ms": 1000 * el / steps, "build_s": 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure_citylearn(seconds: float, data: Path) -> dict:
    from citylearn.citylearn import CityLearnEnv

    # CityLearn 3.0.2 fails on this dataset's washing-machine entries (KeyError on
    # 'washing_machine_start_time_step'): run it without them; batteries, PV and EV chargers stay.
    schema = json.loads((data / "schema.json").read_text())
    schema["root_directory"] = str(data)
    schema["actions"].get("washing_machine", {})["active"] = False
    for name in [k for k in schema["observations"] if k.startswith("washing_machine")]:
        del schema["observations"][name]
    for building in schema["buildings"].values():
        building.pop("washing_machines", None)
    env = CityLearnEnv(schema, central_agent=True)
    n = len(env.buildings)
    env.reset()
    steps = 0
    t0 = time.perf_counter()
    while True:
        _, _, term, trunc, _ = env.step([env.action_space[0].sample()])
        steps += 1
        if term or trunc:
            env.reset()
        el = time.perf_counter() - t0
        if el > seconds and steps >= 10:
            break
    import citylearn

    return {"env": f"CityLearn {citylearn.__version__} (central agent)", "homes": n, "steps": steps, "seconds": el,
            "home_steps_per_s": n * steps / el, "step_ms": 1000 * el / steps, "build_s": float("nan"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(args: argparse.Namespace) -> None:
    if args.child == "citylearn":
        result = _measure_citylearn(args.seconds, Path(args.data))
    elif args.child.startswith("small:"):  # small:<homes>:<fleets>:<one_pass|separate>
        _, homes, fleets, how = args.child.split(":")
        result = _measure_small_fleets(int(homes), int(fleets), how == "one_pass", args.seconds)
    else:
        result = _measure_vpprl(int(args.child), args.seconds)
    print("RESULT " + json.dumps(result))


def _run_child(what: str, seconds: float, python: str = sys.executable, data: Path | None = None) -> dict | None:
    extra = ["--data", str(data)] if data else []
    proc = subprocess.run([python, __file__, "--child", what, "--seconds", str(seconds), *extra],
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"[{what}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per size")
    ap.add_argument("--small-fleets", type=int, nargs=2, default=[20, 16], metavar=("HOMES", "FLEETS"),
                    help="the training set-up compared as separate envs and in one pass (0 0: skip)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "env_throughput.json"))
    ap.add_argument("--citylearn-python", default=None,
                    help="a Python interpreter with citylearn installed (default: this one, if it has citylearn)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    from vpprl.training.progress import bar

    rows = [r for n in bar(None, "fleet sizes", unit="size", iterable=args.sizes)
            if (r := _run_child(str(n), args.seconds))]
    homes, fleets = args.small_fleets
    if homes and fleets:
        rows += [r for how in ("separate", "one_pass") if (r := _run_child(f"small:{homes}:{fleets}:{how}", args.seconds))]
    city_python = args.citylearn_python
    if city_python is None:
        try:
            import citylearn  # noqa: F401
            city_python = sys.executable
        except ImportError:
            city_python = None
    city = None
    if city_python:
        with tempfile.TemporaryDirectory() as tmp:
            from vpprl.data.bundled import plain_copy

            city = _run_child("citylearn", args.seconds, city_python, plain_copy("citylearn_2022", Path(tmp)))
    if city:
        rows.append(city)
    print(f"{'env':34s} {'homes':>8s} {'steps':>7s} {'step ms':>9s} {'home-steps/s':>14s} {'peak MB':>9s} {'vs CityLearn':>13s}")
    for r in rows:
        ratio = r["home_steps_per_s"] / city["home_steps_per_s"] if city else float("nan")
        r["ratio_vs_citylearn"] = ratio
        print(f"{r['env']:34s} {r['homes']:8d} {r['steps']:7d} {r['step_ms']:9.3f} {r['home_steps_per_s']:14,.0f} "
              f"{r['peak_rss_mb']:9.0f} {ratio:13,.0f}")
    if not city:
        print("(CityLearn not measured: pass --citylearn-python with an interpreter that has citylearn)")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
