"""Dispatch-cycle latency: observation + policy (ONNX) + shield + command encoding, at fleet scale.

    python benchmarks/dispatch_latency.py [--homes 1000 10000 100000] [--cycles 8]

For each fleet size: a twin ``VppEnv`` (price arbitrage, 15-minute steps), one device slot per owned
battery, EV charger, water heater and thermostat, telemetry equal to the twin's own states (fresh and
plausible, so every device gets a command), and an exported ONNX policy with random weights in the
layout ``vpprl-train`` writes (the graph is the same size as a trained one). Each cycle runs the
dispatcher's synchronous stages (``Dispatcher.observe``, ``OnnxPolicy.act``, ``Dispatcher.commands_for``)
and the twin's step. End to end (``--e2e-homes``, default 40 homes, about 100 devices): whole cycles
through the loopback protocol simulators (SunSpec, OCPP, CTA-2045, OpenADR), every command acked.
Prints p50/p99 per stage and writes benchmarks/results/dispatch_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, write_results


def random_export(out: Path) -> Path:
    """An ONNX export of an untrained home-batch module (random weights), as vpprl-export writes it."""
    import gymnasium as gym
    import torch
    from vpprl.deployment.export import export_policy
    from vpprl.envs import FleetConfig
    from vpprl.envs.devices import DEVICE_CLASSES
    from vpprl.envs.observation import BASE_GLOBAL_FEATURES, HOME_FEATURES
    from vpprl.envs.tasks.price_arbitrage import PriceArbitrage
    from vpprl.training.checkpoints import write_run_config
    from vpprl.training.config import AgentConfig, TrainConfig
    from vpprl.training.rllib_home_batch import SharedHomeModule

    torch.manual_seed(0)
    width = len(HOME_FEATURES) + len(BASE_GLOBAL_FEATURES) + len(PriceArbitrage.obs_names)
    module = SharedHomeModule(observation_space=gym.spaces.Box(-np.inf, np.inf, (width,), np.float32),
                              action_space=gym.spaces.Box(-1.0, 1.0, (len(DEVICE_CLASSES),), np.float32),
                              model_config={"hidden": [128, 128], "activation": "tanh"})
    checkpoint = out / "checkpoint"
    module.save_to_path(str(checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"))
    (checkpoint / "rllib_checkpoint.json").write_text("{}")
    cfg = TrainConfig(fleet=FleetConfig(num_homes=20, seed=0), agent=AgentConfig(name="rllib_ppo", hidden=[128, 128]))
    write_run_config(cfg, checkpoint)
    return export_policy(checkpoint, out / "export")


def fleet_slots(twin):
    from vpprl.deployment.command_builder import DeviceSlot
    from vpprl.envs.fleet import BATTERY, EV, THERMOSTAT, WATER_HEATER

    f = twin.fleet
    owned = {BATTERY: f.battery.params.capacity_kwh > 0, EV: f.ev.params.max_charge_kw > 0,
             WATER_HEATER: f.water_heater.owned, THERMOSTAT: f.thermostat.owned}
    names = {BATTERY: "battery", EV: "ev", WATER_HEATER: "water_heater", THERMOSTAT: "thermostat"}
    return [DeviceSlot(int(i), j, f"home{i}/{names[j]}") for j, mask in owned.items() for i in np.flatnonzero(mask)]


def readings_from_twin(twin, slots, now: float):
    from vpprl.deployment.commands import Telemetry
    from vpprl.envs.fleet import BATTERY, EV, WATER_HEATER

    f = twin.fleet
    state = {BATTERY: ("soc_kwh", f.battery.energy_kwh), EV: ("soc_kwh", f.ev.energy_kwh),
             WATER_HEATER: ("temp_c", f.water_heater.temp_c)}
    out = {}
    for s in slots:
        key, arr = state.get(s.device_class, ("temp_c", f.thermostat.temp_c))
        extra = {"connected": float(f.ev.connected[s.home])} if s.device_class == EV else {}
        out[s] = Telemetry(s.device_id, now, 0.0, {key: float(arr[s.home]), **extra})
    return out


def measure(homes: int, cycles: int, export: Path) -> dict:
    from vpprl.deployment.command_builder import BuilderConfig
    from vpprl.deployment.dispatch_loop import DispatchConfig, Dispatcher
    from vpprl.deployment.journal import Journal
    from vpprl.deployment.onnx_policy import OnnxPolicy
    from vpprl.envs import FleetConfig, VppEnv

    twin = VppEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=homes, seed=1000), start_day=30,
                  episode_hours=24.0)
    twin.reset(seed=0)
    slots = fleet_slots(twin)
    now = 1_700_000_000.0
    config = DispatchConfig(cadence_s=900.0, builder=BuilderConfig(ttl_s=960.0))
    disp = Dispatcher(twin, OnnxPolicy(export), {s: None for s in slots}, Journal(":memory:"), config,
                      clock=lambda: now)
    stages: dict[str, list[float]] = {"observation": [], "policy": [], "shield": [], "encode": [], "cycle": []}
    for k in range(cycles + 1):  # the first cycle warms caches and is not counted
        report = disp.begin(now)
        for reading in readings_from_twin(twin, slots, now).values():  # arrive between cycles, as messages do
            disp.store.update(reading)
        t0 = time.perf_counter()
        obs = disp.observe(now, report)
        tick = time.perf_counter()
        action = disp.policy.act(obs)
        report.stage_s["policy"] = time.perf_counter() - tick
        batch, setpoints = disp.commands_for(action, now, report)
        elapsed = time.perf_counter() - t0
        disp.end(report, setpoints)
        if int(batch.ok.sum()) != len(slots) or report.untrusted or report.fallback_homes:
            raise RuntimeError(f"{int(batch.ok.sum())} of {len(slots)} commands; untrusted "
                               f"{list(report.untrusted.items())[:3]}; refused {list(report.refused.items())[:3]}")
        if k:
            for name in ("observation", "policy", "shield", "encode"):
                stages[name].append(report.stage_s[name])
            stages["cycle"].append(elapsed)
        now += twin.fleet.dt_s
    row = {"homes": homes, "devices": len(slots), "cycles": cycles}
    for name, values in stages.items():
        row[f"{name}_p50_ms"] = float(np.percentile(values, 50)) * 1e3
        row[f"{name}_p99_ms"] = float(np.percentile(values, 99)) * 1e3
    return row


async def measure_e2e(homes: int, cycles: int, export: Path, tmp: Path) -> dict:
    """Whole cycles (read, decide, send and acks) through the loopback protocol simulators."""
    from vpprl.deployment.command_builder import BuilderConfig
    from vpprl.deployment.dispatch_loop import DispatchConfig, Dispatcher
    from vpprl.deployment.journal import Journal
    from vpprl.deployment.onnx_policy import OnnxPolicy
    from vpprl.deployment.simulated_fleet import start_simulated_fleet
    from vpprl.envs import FleetConfig, VppEnv

    twin = VppEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=homes, seed=1000), start_day=30,
                  episode_hours=24.0)
    twin.reset(seed=0)
    sim = await start_simulated_fleet(twin, start_time=time.time(), tmp_dir=tmp)
    try:
        disp = Dispatcher(twin, OnnxPolicy(export), sim.links, Journal(tmp / "journal.sqlite"),
                          DispatchConfig(cadence_s=900.0, builder=BuilderConfig(ttl_s=960.0)), clock=sim.clock)
        lat, read, send = [], [], []
        for k in range(cycles + 1):
            report = await disp.cycle()
            if report.acked != len(disp.slots):
                raise RuntimeError(f"cycle {k}: {report.acked} of {len(disp.slots)} acked: {report.refused} "
                                   f"{report.failed} {report.untrusted}")
            if k:
                lat.append(report.latency_s)
                read.append(report.stage_s["read"])
                send.append(report.stage_s["send"])
            await sim.step(900.0)
    finally:
        await sim.close()
    return {"homes": homes, "devices": len(disp.slots), "cycles": cycles,
            "read_p50_ms": float(np.percentile(read, 50)) * 1e3, "send_p50_ms": float(np.percentile(send, 50)) * 1e3,
            "cycle_p50_ms": float(np.percentile(lat, 50)) * 1e3, "cycle_p99_ms": float(np.percentile(lat, 99)) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--e2e-homes", type=int, default=40, help="homes behind the protocol simulators (0: skip)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "dispatch_latency.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export = random_export(Path(tmp))
        if args.e2e_homes:
            e2e = asyncio.run(measure_e2e(args.e2e_homes, args.cycles, export, Path(tmp)))
            print(f"end to end through the loopback protocol simulators: {e2e['homes']} homes, {e2e['devices']} "
                  f"devices: cycle p50 {e2e['cycle_p50_ms']:.1f} ms, p99 {e2e['cycle_p99_ms']:.1f} ms (read p50 "
                  f"{e2e['read_p50_ms']:.1f} ms, send and acks p50 {e2e['send_p50_ms']:.1f} ms)")
            rows.append({"end_to_end": True, **e2e})
        print(f"{'homes':>7s} {'devices':>8s} {'obs p50':>8s} {'policy p50':>10s} {'shield p50':>10s} "
              f"{'encode p50':>10s} {'cycle p50':>10s} {'cycle p99':>10s}  (ms)")
        for homes in args.homes:
            row = measure(homes, args.cycles, export)
            rows.append(row)
            print(f"{homes:7d} {row['devices']:8d} {row['observation_p50_ms']:8.1f} {row['policy_p50_ms']:10.1f} "
                  f"{row['shield_p50_ms']:10.1f} {row['encode_p50_ms']:10.1f} {row['cycle_p50_ms']:10.1f} "
                  f"{row['cycle_p99_ms']:10.1f}")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
