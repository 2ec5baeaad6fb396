"""``vpprl-dispatch``: the dispatch loop against simulated homes that speak the real protocols on loopback.

    vpprl-dispatch simulate=100                        # the rule-based policy, 100 homes, one held-out day
    vpprl-dispatch simulate=100 policy=export          # a policy exported by vpprl-export (ONNX, no torch)

Each home's battery (SunSpec Modbus), EV charger (OCPP), water heater (CTA-2045) and thermostat (OpenADR)
is a simulator on 127.0.0.1 with the env's device physics; the loop reads them, decides through the policy
and the shield, and commands them, once per step of simulated time. At the end it prints the dispatched
day's KPIs, metered (the homes' load from the data plus the device power the simulators reported), beside
the same policy on the same day in the env, and the loop's own figures (latency, commands, fallbacks).
Real devices need a device registry, which is not built yet: ``simulate`` must be > 0.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ..agents.policy import NoControl, Policy
from ..agents.rule_based import RuleBased
from ..data.profiles import G
from ..envs import FleetConfig, VppEnv
from ..envs.fleet import BATTERY, EV, THERMOSTAT, WATER_HEATER
from ..training.cli import check_known_keys, user_errors
from .command_builder import BuilderConfig
from .dispatch_loop import CycleReport, DispatchConfig, Dispatcher
from .journal import Journal

log = logging.getLogger("vpprl.dispatch")
CLASS_NAMES = {"battery": BATTERY, "ev": EV, "water_heater": WATER_HEATER, "thermostat": THERMOSTAT}


@dataclass
class DispatchRunConfig:
    """:param policy: ``rule_based``, ``no_control`` or a directory written by ``vpprl-export``.
    :param simulate: homes to simulate on loopback (> 0; real devices need a registry, not built yet)."""

    policy: str = "rule_based"
    simulate: int = 10
    task: str = "price_arbitrage"
    hours: float = 24.0
    dt_s: int = 900
    start_day: int = 30
    days: str = "held_out"
    fleet_seed: int = 1000
    classes: list[str] = field(default_factory=lambda: ["battery", "ev", "water_heater", "thermostat"])
    policy_deadline_s: float = 2.0
    journal: str = "dispatch_journal.sqlite"
    compare_in_env: bool = True
    output_dir: str = "."

    def __post_init__(self) -> None:
        if not 1 <= self.simulate <= 1000:
            raise ValueError(f"simulate = {self.simulate}: must be in [1, 1000] simulated homes (vpprl-dispatch "
                             "drives real devices only through a device registry, which is not built yet)")
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if unknown or not self.classes:
            raise ValueError(f"classes = {self.classes}: each must be one of {sorted(CLASS_NAMES)}")
        if not 0.25 <= self.hours <= 168:
            raise ValueError(f"hours = {self.hours} is outside the allowed range [0.25, 168]")
        if self.dt_s not in (300, 900, 1800, 3600):
            raise ValueError(f"dt_s = {self.dt_s}: must be one of 300, 900, 1800, 3600 s")


ConfigStore.instance().store(name="dispatch_schema", node=DispatchRunConfig)


def make_policy(name: str) -> Policy:
    if name == "rule_based":
        return RuleBased()
    if name == "no_control":
        return NoControl()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"policy: {name!r} is neither rule_based / no_control nor a directory written by "
                                "vpprl-export (policy.onnx + manifest.json)")
    from .onnx_policy import OnnxPolicy

    return OnnxPolicy(path)


def make_twin(cfg: DispatchRunConfig) -> VppEnv:
    env = VppEnv(task=cfg.task, fleet=FleetConfig(num_homes=cfg.simulate, seed=cfg.fleet_seed), dt_s=cfg.dt_s,
                 episode_hours=cfg.hours, days=cfg.days)
    env.check_start_day("start_day", cfg.start_day)
    env.set_start_day(cfg.start_day)
    return env


def day_kpis(net_kw: np.ndarray, price_import: np.ndarray, price_export: np.ndarray, dt_h: float) -> dict[str, float]:
    """Bill, import and peak of a (steps, homes) metered net load: the same formula for both columns."""
    imp, exp = np.maximum(net_kw, 0.0), np.maximum(-net_kw, 0.0)
    return {"energy_cost": float(((imp * price_import[:, None]) - exp * price_export[:, None]).sum() * dt_h),
            "import_kwh": float(imp.sum() * dt_h), "peak_kw": float(net_kw.sum(axis=1).max())}


def comfort_kpis(twin: VppEnv, tank_c: np.ndarray, indoor_c: np.ndarray) -> dict[str, float]:
    """Hot-water and thermal discomfort (degC-h below the tank's comfort floor; outside the home's band) of
    (steps, homes) temperatures at the end of each step. Tanks in whole degC, as CTA-2045 reports them."""
    f = twin.fleet
    wh, th = f.water_heater, f.thermostat
    tank = np.round(tank_c)
    dhw = np.nansum(np.where(wh.owned, np.maximum(wh.params.comfort_low_c - tank, 0.0), 0.0)) * f.dt_h
    out = np.maximum(th.params.comfort_low_c - indoor_c, 0.0) + np.maximum(indoor_c - th.params.comfort_high_c, 0.0)
    thermal = np.nansum(np.where(th.owned, out, 0.0)) * f.dt_h
    return {"dhw_discomfort_degh": float(dhw), "thermal_discomfort_degh": float(thermal)}


def in_env(cfg: DispatchRunConfig) -> dict[str, float]:
    """The same policy behind the same shield, day and fleet in the env (its own episode)."""
    from .shielded_policy import ShieldedPolicy

    env = make_twin(cfg)
    obs, _ = env.reset(seed=0)
    policy = ShieldedPolicy(make_policy(cfg.policy))
    policy.reset(env)
    nets, pi, pe, tank, indoor = [], [], [], [], []
    for _ in range(env.episode_steps):
        pi.append(float(env.fleet.grid_at(env.fleet.t)[G["price_import"]]))
        pe.append(float(env.fleet.grid_at(env.fleet.t)[G["price_export"]]))
        obs, *_ = env.step(policy.act(obs))
        nets.append(env.fleet.net_kw.astype(np.float64).copy())
        tank.append(env.fleet.water_heater.temp_c.astype(np.float64).copy())
        indoor.append(env.fleet.thermostat.temp_c.astype(np.float64).copy())
    return {**day_kpis(np.array(nets), np.array(pi), np.array(pe), env.fleet.dt_h),
            **comfort_kpis(env, np.array(tank), np.array(indoor))}


async def run_simulated(cfg: DispatchRunConfig, out: Path) -> dict:
    from .simulated_fleet import start_simulated_fleet

    twin = make_twin(cfg)
    twin.reset(seed=0)
    policy = make_policy(cfg.policy)
    policy.reset(twin)
    f = twin.fleet
    classes = tuple(CLASS_NAMES[c] for c in cfg.classes)
    config = DispatchConfig(cadence_s=float(cfg.dt_s), policy_deadline_s=cfg.policy_deadline_s,
                            builder=BuilderConfig(ttl_s=cfg.dt_s + min(60.0, cfg.dt_s / 2)))  # a cycle + a margin
    journal = Journal(out / cfg.journal)
    rows, nets, pi, pe, tank, indoor = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # simulated time starts now (OpenADR judges expiry on the wall clock) and runs one step per cycle
        sim = await start_simulated_fleet(twin, start_time=time.time(), classes=classes, tmp_dir=Path(tmp),
                                          ven_poll_s=1.0)  # a VEN polls its VTN once a second
        try:
            disp = Dispatcher(twin, policy, sim.links, journal, config, clock=sim.clock)
            resent, expired = await disp.recover()  # a journal left by a crashed run: re-send or expire
            if resent or expired:
                log.warning("journal %s: %d pending commands re-sent, %d expired", out / cfg.journal, resent, expired)
            simulated = np.zeros((len(disp.slots),), bool)
            register = disp.store.energy_kwh.copy()  # energy registers at the last cycle (NaN: none yet)
            twin_step = None
            for _ in range(twin.episode_steps):
                report = await disp.cycle()
                if twin_step is None:
                    register[:] = disp.store.energy_kwh  # the registers before the first interval
                else:  # the interval just metered: data load + the devices' reported power
                    nets.append(metered_net(twin_step, disp, report, register))
                    tank.append(read_temps(disp, WATER_HEATER, twin_step[2]))
                    indoor.append(read_temps(disp, THERMOSTAT, twin_step[3]))
                pi.append(float(f.grid[G["price_import"]]))
                pe.append(float(f.grid[G["price_export"]]))
                twin_step = (f.net_kw.astype(np.float64).copy(), f.last_outcome.device_kw.astype(np.float64).copy(),
                             f.water_heater.temp_c.astype(np.float64).copy(), f.thermostat.temp_c.astype(np.float64).copy())
                await sim.step(float(cfg.dt_s))
                simulated |= ~np.isnan(report.tracking_error_kw)
                rows.append({"cycle": report.cycle, "latency_ms": report.latency_s * 1e3, "sent": report.sent,
                             "acked": report.acked, "untrusted": len(report.untrusted),
                             "fallback_homes": len(report.fallback_homes), "refused": len(report.refused),
                             "failed": len(report.failed)})
            final = CycleReport(disp.cycle_no, sim.clock())  # read the last interval back (no new cycle)
            disp.store.start_cycle()
            await disp.read_all(final)
            disp.observe(sim.clock(), final)
            nets.append(metered_net(twin_step, disp, final, register))
            tank.append(read_temps(disp, WATER_HEATER, twin_step[2]))
            indoor.append(read_temps(disp, THERMOSTAT, twin_step[3]))
        finally:
            await sim.close()
            journal.close()
    write_cycles(out / "dispatch_cycles.csv", rows)
    kpis = {**day_kpis(np.array(nets), np.array(pi), np.array(pe), f.dt_h),
            **comfort_kpis(twin, np.array(tank), np.array(indoor))}
    lat = np.array([r["latency_ms"] for r in rows])
    loop = {"cycles": len(rows), "devices": len(disp.slots), "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p99_ms": float(np.percentile(lat, 99)), "commands_sent": sum(r["sent"] for r in rows),
            "commands_acked": sum(r["acked"] for r in rows), "untrusted_readings": sum(r["untrusted"] for r in rows),
            "fallback_home_cycles": sum(r["fallback_homes"] for r in rows)}
    return {"dispatched": kpis, "loop": loop}


def write_cycles(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_temps(disp: Dispatcher, device_class: int, twin_temps: np.ndarray) -> np.ndarray:
    """(homes,) temperatures the devices of a class reported this cycle (trusted); the twin's own elsewhere
    (homes without a simulated device of the class)."""
    temps = twin_temps.copy()
    take = disp.trusted & (disp.device_class == device_class)
    temps[disp.home[take]] = disp.store.state[take]
    return temps


def metered_net(twin_step: tuple[np.ndarray, ...], disp: Dispatcher, report, register: np.ndarray) -> np.ndarray:
    """(homes,) kW of the interval before this cycle's readings: the twin's net for it with each simulated
    device's power replaced by what it reported: the mean power from its energy register where it has one
    (``register``: last cycle's values, updated here), else the power it read at the interval's end (the
    twin's own where no reading was trusted)."""
    net, device_kw = twin_step[0], twin_step[1]
    net = net.copy()
    measured = report.tracking_error_kw is not None
    power = disp.store.power_kw.copy()
    energy = disp.store.energy_kwh
    dt_h = disp.twin.fleet.dt_h
    from_register = np.isfinite(energy) & np.isfinite(register)
    power[from_register] = (energy[from_register] - register[from_register]) / dt_h
    register[:] = energy
    for m in np.flatnonzero(disp.trusted) if measured else ():
        i, j = disp.home[m], disp.device_class[m]
        if math.isfinite(power[m]):
            net[i] += power[m] - device_kw[j, i]
    return net


def table(result: dict, env_kpis: dict | None, cfg: DispatchRunConfig) -> str:
    lines = [f"# vpprl-dispatch: {cfg.simulate} simulated homes, {cfg.task}, day {cfg.start_day}, policy {cfg.policy}",
             "", "| KPI | dispatched (metered) | same policy in the env |", "| --- | ---: | ---: |"]
    for key, value in result["dispatched"].items():
        other = f"{env_kpis[key]:.2f}" if env_kpis else "-"
        lines.append(f"| {key} | {value:.2f} | {other} |")
    lines += ["", "| loop | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result["loop"].items()]
    return "\n".join(lines)


@hydra.main(config_path="pkg://vpprl.configs.dispatch", config_name="dispatch", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    with user_errors("vpprl-dispatch"):
        check_known_keys(cfg, DispatchRunConfig)
        obj: DispatchRunConfig = OmegaConf.to_object(cfg)
        make_policy(obj.policy)
        make_twin(obj)
    if obj.output_dir == ".":
        obj.output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    out = Path(obj.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for chatty in ("openleadr", "apscheduler", "websockets", "pymodbus"):  # every message at INFO: thousands a cycle
        logging.getLogger(chatty).setLevel(logging.WARNING)
    result = asyncio.run(run_simulated(obj, out))
    env_kpis = in_env(obj) if obj.compare_in_env else None
    text = table(result, env_kpis, obj)
    (out / "dispatch_kpis.md").write_text(text + "\n")
    print(text)
    print(f"\noutputs: {out} (dispatch_kpis.md, dispatch_cycles.csv, {obj.journal})")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
