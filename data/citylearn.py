"""Loader for datasets in the CityLearn format (schema.json + per-building CSVs, plain or gzip).

Works on any CityLearn dataset directory, e.g. the bundled 2022 challenge data with EV chargers
(``dataset=citylearn_2022``). Each building becomes one profile; its schema attributes become device
specs that the fleet builder turns into per-home device parameters.

Every value read is checked: a missing file or column, a NaN or a value outside its physical range,
or a file shorter than the schema's simulation window stops the load with an error that names the
file, the column and the CSV line. Rows beyond the window are not part of the simulation (as in
CityLearn). Devices and columns vpprl does not map are refused (``citylearn_audit``), with two
documented exceptions listed in ``notes``.

What is mapped, as CityLearn's plain ``Building`` simulates it: non-shiftable load; cooling, heating and
hot-water demand served in full by the building's ``cooling_device``/``heating_device``/``dhw_device``
(electric load = demand / COP, CityLearn's Carnot-times-efficiency heat pump or its electric heater), a
fixed load since such a building has no freedom over it; PV; the battery with CityLearn's curves, depth of
discharge, standby loss and capacity fade; the first EV charger. Refused: thermal storage tanks, dynamics
buildings (indoor temperature under control, setpoints, occupancy) and outages. The one documented fill: a connected EV row with no
departure time gets the hours until the charger state leaves 1 (the bundled 2022 data has such rows);
the count is in ``notes``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .bundled import resolve_dataset
from .citylearn_audit import audit_building
from .profiles import GRID_CHANNELS, HOME_CHANNELS, H, Profiles

log = logging.getLogger(__name__)

#: CityLearn's battery curves as its 2021/2022 challenge schemas publish them; CityLearn 3 draws random
#: curves when a schema has none, which no second simulator can reproduce, so vpprl uses these then.
DEFAULT_POWER_CURVE = ((0.0, 1.0), (0.8, 1.0), (1.0, 0.2))
DEFAULT_EFFICIENCY_CURVE = ((0.0, 0.83), (0.3, 0.83), (0.7, 0.9), (0.8, 0.9), (1.0, 0.85))
#: CityLearn 3 draws an absent standby loss from U(0.001, 0.009) per hour and capacity fade from
#: U(1e-5, 1e-4); vpprl uses each interval's midpoint then (listed in ``notes``).
DEFAULT_STANDBY_LOSS_PER_H = 0.005
DEFAULT_CAPACITY_LOSS_COEFFICIENT = 5.5e-5

#: Thermal demand columns and the device key that serves each (CityLearn's Building meets them in full).
THERMAL_DEMANDS = (("cooling_demand", "cooling_device"), ("heating_demand", "heating_device"),
                   ("dhw_demand", "dhw_device"))
#: midpoints of the ranges CityLearn 3 draws absent HVAC attributes from (each use listed in ``notes``)
DEFAULT_HEAT_PUMP = {"efficiency": 0.25, "target_heating_temperature": 47.5, "target_cooling_temperature": 8.5}
DEFAULT_HEATER_EFFICIENCY = 0.945
HEAT_PUMP = "citylearn.energy_model.HeatPump"
ELECTRIC_HEATER = "citylearn.energy_model.ElectricHeater"

EV_CONNECTED_STATE = 1  # CityLearn charger state: 1 = an EV is plugged in


@dataclass(frozen=True)
class BuildingSpec:
    """Device sizes of one CityLearn building, straight from schema.json (kW, kWh)."""

    name: str
    battery_kwh: float = 0.0
    battery_kw: float = 0.0
    battery_efficiency: float = 0.9
    battery_depth_of_discharge: float = 1.0
    battery_initial_soc: float = 0.0
    battery_standby_loss_per_h: float = 0.0
    battery_capacity_loss_coefficient: float = 0.0
    battery_power_curve: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 1.0))  # (SoC, fraction of kW)
    battery_efficiency_curve: tuple[tuple[float, float], ...] = ((0.0, 0.9), (1.0, 0.9))  # (kW fraction, eff.)
    pv_kwp: float = 0.0
    charger_kw: float = 0.0
    charger_discharge_kw: float = 0.0
    charger_efficiency: float = 0.95
    charger_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class CityLearnDataset:
    """A CityLearn dataset: one profile per building plus each building's device sizes.

    ``notes``: what the loader filled in by a documented rule (file, column, count)."""

    path: Path
    profiles: Profiles
    buildings: tuple[BuildingSpec, ...]
    schema: dict = field(repr=False, default_factory=dict)
    notes: tuple[str, ...] = ()


def data_file(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name.gz`` when only the compressed file is there."""
    path = root / name
    gz = root / (name + ".gz")
    if path.exists() and gz.exists():
        raise ValueError(f"both {path} and {gz.name} exist: keep one (the loader will not guess which is current)")
    if path.exists():
        return path
    if gz.exists():
        return gz
    raise FileNotFoundError(f"CityLearn dataset file not found: {path} (nor {gz.name})")


class _Table:
    """One CSV of the dataset, cut to the simulation window, with checked column access."""

    def __init__(self, root: Path, name: str, window: tuple[int, int], columns: list[str]) -> None:
        self.path = data_file(root, name)
        self.first_row = window[0]
        try:
            df = pd.read_csv(self.path)
        except (EOFError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise ValueError(f"{self.path}: cannot be read as a CSV table ({type(err).__name__}: {err}); is the "
                             f"file truncated or corrupt?") from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{self.path}: missing column(s) {missing}; found {list(df.columns)}")
        self.raw = df
        if len(df) < window[1]:
            raise ValueError(f"{self.path}: {len(df)} data rows, but the simulation window needs rows "
                             f"{window[0]}..{window[1] - 1} (schema simulation_start/end_time_step); "
                             f"is the file truncated?")
        self.df = df.iloc[window[0]: window[1]].reset_index(drop=True)

    def line(self, row: int) -> int:
        """CSV line number (header = line 1) of a row of the window."""
        return self.first_row + row + 2

    def column(self, name: str, lo: float = -np.inf, hi: float = np.inf, rows: np.ndarray | None = None,
               unit: str = "") -> np.ndarray:
        """A float column; NaN/inf or values outside [lo, hi] (only ``rows``, a mask, if given) -> ValueError."""
        values = pd.to_numeric(self.df[name], errors="coerce").to_numpy(dtype=np.float64)
        check = np.ones(len(values), bool) if rows is None else rows
        bad = check & ~np.isfinite(values)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{self.path}: column {name!r} has {int(bad.sum())} empty or non-numeric value(s), "
                             f"first at line {self.line(r)} ({self.df[name].iloc[r]!r})")
        bad = check & ((values < lo) | (values > hi))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{self.path}: column {name!r} must be in [{lo}, {hi}]{unit}, got {float(values[r])!r} at "
                             f"line {self.line(r)} ({int(bad.sum())} value(s) out of range)")
        return values


def _int(schema: dict, key: str, default: int) -> int:
    value = schema.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"schema.json: {key} must be a whole number, got {value!r}")
    return int(value)


def _attribute(attrs: dict, key: str, default: float, lo: float, hi: float, where: str) -> float:
    """A device attribute of schema.json, checked: finite and in [lo, hi] (errors name building and key)."""
    value = attrs.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"schema.json: {where}.{key} must be a number, got {value!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"schema.json: {where}.{key} must be in [{lo}, {hi}], got {value!r}")
    return value


def _curve(attrs: dict, key: str, default: tuple, y_range: tuple[float, float], where: str,
           notes: list[str]) -> tuple[tuple[float, float], ...]:
    """A CityLearn curve [[x, y], ...]: x rising from 0 to 1, y in ``y_range``; the default (noted) if absent."""
    value = attrs.get(key)
    if value is None:
        notes.append(f"{where}.{key} absent: CityLearn 3 would draw a random curve; vpprl uses {list(map(list, default))}")
        return default
    try:
        points = tuple((float(x), float(y)) for x, y in value)
    except (TypeError, ValueError):
        raise ValueError(f"schema.json: {where}.{key} must be a list of [x, y] pairs, got {value!r}") from None
    xs = [x for x, _ in points]
    if len(points) < 2 or xs[0] != 0.0 or xs[-1] != 1.0 or any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"schema.json: {where}.{key} needs x rising strictly from 0 to 1 (at least 2 points), "
                         f"got x = {xs}")
    bad = [y for _, y in points if not (np.isfinite(y) and y_range[0] <= y <= y_range[1])]
    if bad:
        raise ValueError(f"schema.json: {where}.{key} values must be in [{y_range[0]}, {y_range[1]}], got {bad[0]!r}")
    return points


def _battery(storage: dict, where: str, notes: list[str]) -> dict:
    """BuildingSpec fields of a CityLearn ``electrical_storage`` (attributes as CityLearn's Battery reads them)."""
    attrs = storage.get("attributes") or {}
    out = {"battery_kwh": _attribute(attrs, "capacity", 0.0, 0.0, 1e5, where),
           "battery_kw": _attribute(attrs, "nominal_power", 0.0, 0.0, 1e5, where),
           "battery_efficiency": _attribute(attrs, "efficiency", 0.9, 0.01, 1.0, where),
           "battery_depth_of_discharge": _attribute(attrs, "depth_of_discharge", 1.0, 0.0, 1.0, where)}
    if not out["battery_kwh"]:
        return out
    out["battery_initial_soc"] = _attribute(attrs, "initial_soc", 1.0 - out["battery_depth_of_discharge"], 0.0, 1.0,
                                            where)
    for key, field_name, default in (("loss_coefficient", "battery_standby_loss_per_h", DEFAULT_STANDBY_LOSS_PER_H),
                                     ("capacity_loss_coefficient", "battery_capacity_loss_coefficient",
                                      DEFAULT_CAPACITY_LOSS_COEFFICIENT)):
        if attrs.get(key) is None:
            notes.append(f"{where}.{key} absent: CityLearn 3 would draw it at random; vpprl uses {default}")
        out[field_name] = _attribute(attrs, key, default, 0.0, 1.0, where)
    out["battery_power_curve"] = _curve(attrs, "capacity_power_curve", DEFAULT_POWER_CURVE, (0.0, 1.0), where, notes)
    out["battery_efficiency_curve"] = _curve(attrs, "power_efficiency_curve", DEFAULT_EFFICIENCY_CURVE, (0.01, 1.0),
                                             where, notes)
    return out


def _device_cop(device: dict, heating: bool, t_out: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """Electric kW per kW of heat delivered (COP) of a CityLearn HVAC/DHW device at each outdoor temperature,
    by CityLearn's own formulas: a heat pump's Carnot COP times its efficiency (set to 20 where < 0 or > 20),
    an electric heater's efficiency."""
    kind = device.get("type", "")
    attrs = device.get("attributes") or {}

    def attribute(key: str, default: float, lo: float, hi: float) -> float:
        if attrs.get(key) is None:
            notes.append(f"{where}.attributes.{key} absent: CityLearn 3 would draw it at random; vpprl uses {default}")
        return _attribute(attrs, key, default, lo, hi, f"{where}.attributes")

    if kind == ELECTRIC_HEATER:
        if not heating:
            raise ValueError(f"schema.json: {where} is an ElectricHeater, which cannot cool")
        return np.full(len(t_out), attribute("efficiency", DEFAULT_HEATER_EFFICIENCY, 0.01, 1.0))
    if kind != HEAT_PUMP:
        raise ValueError(f"schema.json: {where}.type {kind!r} is not supported (vpprl maps {HEAT_PUMP} and "
                         f"{ELECTRIC_HEATER})")
    efficiency = attribute("efficiency", DEFAULT_HEAT_PUMP["efficiency"], 0.01, 1.0)
    key = "target_heating_temperature" if heating else "target_cooling_temperature"
    target = attribute(key, DEFAULT_HEAT_PUMP[key], -50.0, 100.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cop = efficiency * (target + 273.15) / ((target - t_out) if heating else (t_out - target))
    return np.where((cop < 0) | (cop > 20) | ~np.isfinite(cop), 20.0, cop)


def _thermal_load_kw(b: dict, name: str, sim: "_Table", t_out: np.ndarray, dt_h: float,
                     notes: list[str]) -> np.ndarray:
    """Electric kW of the building's cooling, heating and hot-water devices serving the data's demands in full
    (CityLearn's Building without thermal storage has no freedom here: the load is fixed)."""
    load = np.zeros(len(t_out))
    for column, device_key in THERMAL_DEMANDS:
        demand_kw = sim.column(column, 0.0, 1e5, unit=" kWh") / dt_h
        if not demand_kw.any():
            continue
        device = b.get(device_key)
        if not device:
            raise ValueError(f"{sim.path.name}: column {column!r} holds demand but buildings.{name} has no "
                             f"{device_key} to serve it (CityLearn would leave it unserved); add the device or "
                             f"zero the column")
        cop = _device_cop(device, column != "cooling_demand", t_out, f"buildings.{name}.{device_key}", notes)
        load += demand_kw / cop
    return load


def _runs_end(connected: np.ndarray) -> np.ndarray:
    """For each row, the index one past the end of its run of connected rows."""
    n = len(connected)
    end = np.empty(n, np.int64)
    nxt = n
    for r in range(n - 1, -1, -1):  # load time only, once per file
        if not connected[r]:
            nxt = r
        end[r] = nxt if connected[r] else r
    return end


def _ev_channels(table: _Table, dt_h: float, notes: list[str]) -> np.ndarray:
    """EV session channels (ev_connected .. ev_target_soc) from a CityLearn charger file.

    Charger state 1 means an EV is plugged in; each contiguous run of state-1 rows is one session.
    Arrival SoC is the SoC read at the session's first row (CityLearn's later rows are its own
    simulation), target SoC is ``electric_vehicle_required_soc_departure``; hours to departure is
    ``electric_vehicle_departure_time`` + 1 (the column counts down to 0 in the last connected hour).
    """
    state = table.column("electric_vehicle_charger_state", 0, 3)
    if np.any(state != np.round(state)):
        r = int(np.flatnonzero(state != np.round(state))[0])
        raise ValueError(f"{table.path}: column 'electric_vehicle_charger_state' must be a whole number (1 = "
                         f"plugged in), got {state[r]!r} at line {table.line(r)}")
    connected = state == EV_CONNECTED_STATE
    capacity = table.column("electric_vehicle_battery_capacity_khw", 1e-3, 1e4, rows=connected, unit=" kWh")
    soc = table.column("current_soc", 0, 100, rows=connected, unit=" %")
    target = table.column("electric_vehicle_required_soc_departure", 0, 100, rows=connected, unit=" %")
    departure = pd.to_numeric(table.df["electric_vehicle_departure_time"], errors="coerce").to_numpy(dtype=float)
    missing = connected & ~np.isfinite(departure)
    bad = connected & np.isfinite(departure) & ((departure < 0) | (departure > 24 * 366))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{table.path}: column 'electric_vehicle_departure_time' must be in [0, 8784] h, got "
                         f"{departure[r]!r} at line {table.line(r)}")
    hours = departure + 1.0
    if missing.any():
        rows_left = (_runs_end(connected) - np.arange(len(connected))).astype(float)
        hours[missing] = rows_left[missing] * dt_h
        notes.append(f"{table.path.name}: electric_vehicle_departure_time empty in {int(missing.sum())} connected "
                     f"row(s); filled with the hours until the charger state leaves {EV_CONNECTED_STATE}")
    session = np.cumsum(np.r_[True, connected[1:] != connected[:-1]])
    first_soc = pd.Series(soc).groupby(session).transform("first").to_numpy()
    out = np.zeros((len(connected), 5), dtype=np.float64)
    out[:, 0] = connected
    out[:, 1] = hours
    out[:, 2] = capacity
    out[:, 3] = first_soc / 100.0
    out[:, 4] = target / 100.0
    out[~connected, 1:] = 0.0
    return out


def _window(schema: dict, root: Path, entries: list[tuple[str, dict]]) -> tuple[int, int]:
    start = _int(schema, "simulation_start_time_step", 0)
    end = schema.get("simulation_end_time_step")
    if end is None:  # no window in the schema: the data's length, which every time series must share
        first = entries[0][1]
        names = [first["weather"], first["pricing"], first["carbon_intensity"]]
        names += [b["energy_simulation"] for _, b in entries]
        lengths = {n: len(_Table(root, n, (0, 0), []).raw) for n in names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{root}/schema.json has no simulation_end_time_step and the time series differ in "
                             f"length (a truncated file?): {lengths}")
        end = next(iter(lengths.values())) - 1
    end = _int(schema, "simulation_end_time_step", end)
    if not 0 <= start <= end:
        raise ValueError(f"{root}/schema.json: need 0 <= simulation_start_time_step <= simulation_end_time_step, "
                         f"got {start} and {end}")
    return start, end + 1


def load_citylearn(path: str | Path, export_price: float = 0.0) -> CityLearnDataset:
    """Read a CityLearn-format dataset into shared profiles and building specs.

    :param path: a bundled dataset's name (``citylearn_2022``) or a directory holding ``schema.json``
        and the CSVs it names (``.csv`` or ``.csv.gz``).
    :param export_price: feed-in compensation in $/kWh (CityLearn datasets carry none).
    """
    root = resolve_dataset(path)
    schema_path = root / "schema.json"
    if not schema_path.exists():
        raise FileNotFoundError(f"CityLearn dataset file not found: {schema_path}")
    try:
        schema = json.loads(schema_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{schema_path}: not valid JSON ({err})") from None
    try:
        return _load(root, schema, export_price)
    except (KeyError, TypeError, AttributeError) as err:  # a key missing or of the wrong kind in schema.json
        what = f"missing key {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{schema_path}: not a CityLearn schema this loader can read ({what})") from None


def _load(root: Path, schema: dict, export_price: float) -> CityLearnDataset:
    dt_s = _int(schema, "seconds_per_time_step", 3600)
    if not 1 <= dt_s <= 86400:
        raise ValueError(f"schema.json: seconds_per_time_step must be in [1, 86400], got {dt_s}")
    entries = [(name, b) for name, b in schema["buildings"].items() if b.get("include", True)]
    if not entries:
        raise ValueError(f"{root / 'schema.json'}: no building has include=true")
    window = _window(schema, root, entries)
    n_rows = window[1] - window[0]
    first = entries[0][1]
    weather = _Table(root, first["weather"], window, ["outdoor_dry_bulb_temperature", "diffuse_solar_irradiance",
                                                      "direct_solar_irradiance"])
    pricing = _Table(root, first["pricing"], window, ["electricity_pricing"])
    carbon = _Table(root, first["carbon_intensity"], window, ["carbon_intensity"])

    notes: list[str] = []
    dt_h = dt_s / 3600.0
    t_out = weather.column("outdoor_dry_bulb_temperature", -90.0, 70.0, unit=" degC")
    home = np.zeros((n_rows, len(entries), len(HOME_CHANNELS)), dtype=np.float32)
    specs = []
    for k, (name, b) in enumerate(entries):
        sim = _Table(root, b["energy_simulation"], window, ["non_shiftable_load", "solar_generation", "dhw_demand",
                                                            "cooling_demand", "heating_demand"])
        notes += audit_building(name, b, sim.df, sim.path.name)
        home[:, k, H["base_load_kw"]] = (sim.column("non_shiftable_load", 0.0, 1e5, unit=" kWh") / dt_h
                                         + _thermal_load_kw(b, name, sim, t_out, dt_h, notes))
        home[:, k, H["pv_kw_per_kwp"]] = sim.column("solar_generation", 0.0, 2000.0, unit=" W/kW") / 1000.0
        chargers = b.get("chargers") or {}
        charger_kw = discharge_kw = 0.0
        charger_eff = 0.95
        if chargers:
            cname, charger = next(iter(chargers.items()))
            attrs = charger.get("attributes", {})
            where = f"buildings.{name}.chargers.{cname}.attributes"
            charger_kw = _attribute(attrs, "max_charging_power", attrs.get("nominal_power", 0.0), 0.0, 1000.0, where)
            discharge_kw = _attribute(attrs, "max_discharging_power", 0.0, 0.0, 1000.0, where)
            charger_eff = _attribute(attrs, "efficiency", 0.95, 0.01, 1.0, where)
            table = _Table(root, charger["charger_simulation"], window,
                           ["electric_vehicle_charger_state", "electric_vehicle_battery_capacity_khw", "current_soc",
                            "electric_vehicle_departure_time", "electric_vehicle_required_soc_departure"])
            home[:, k, H["ev_connected"]: H["ev_target_soc"] + 1] = _ev_channels(table, dt_h, notes)
        battery = _battery(b.get("electrical_storage") or {}, f"buildings.{name}.electrical_storage.attributes", notes)
        pv = (b.get("pv") or {}).get("attributes", {})
        specs.append(BuildingSpec(
            name=name,
            **battery,
            pv_kwp=_attribute(pv, "nominal_power", 0.0, 0.0, 1e5, f"buildings.{name}.pv.attributes"),
            charger_kw=charger_kw,
            charger_discharge_kw=discharge_kw,
            charger_efficiency=charger_eff,
            charger_names=tuple(chargers),
        ))
    grid = np.zeros((n_rows, len(GRID_CHANNELS)))
    grid[:, 0] = t_out
    # CityLearn gives diffuse + direct irradiance; their sum approximates GHI for solar gains.
    for c in ("diffuse_solar_irradiance", "direct_solar_irradiance"):
        grid[:, 1] += weather.column(c, 0.0, 2000.0, unit=" W/m2")
    grid[:, 2] = pricing.column("electricity_pricing", -100.0, 100.0, unit=" $/kWh")
    grid[:, 3] = export_price
    grid[:, 4] = carbon.column("carbon_intensity", 0.0, 10.0, unit=" kg/kWh")
    for note in notes:
        log.info("%s", note)
    extra = {}
    if "day_type" in sim.df:  # CityLearn's calendar (EnergyPlus): 1 = Sunday .. 7 = Saturday, 8 = holiday
        day_type = sim.column("day_type", 1, 8)
        days = np.arange(len(day_type)) // max(1, 86400 // dt_s)
        ok = day_type <= 7
        if ok.any():
            r = int(np.flatnonzero(ok)[0])
            extra["start_weekday"] = int((day_type[r] - 2) % 7 - days[r]) % 7  # Monday = 0
    profiles = Profiles(
        dt_s=dt_s, home=np.ascontiguousarray(home), grid=grid,
        start=str(schema.get("start_date", "2000-01-01")), names=tuple(s.name for s in specs),
        source=f"CityLearn dataset {root.name}", extra=extra,
    )
    return CityLearnDataset(path=root, profiles=profiles, buildings=tuple(specs), schema=schema, notes=tuple(notes))
