"""Loader for datasets in the CityLearn format (schema.json + per-building CSVs, plain or gzip).

Works on any CityLearn dataset directory, e.g. the bundled 2022 challenge data with EV chargers
(``dataset=citylearn_2022``). Each building becomes one profile; its schema attributes become device
specs that the fleet builder turns into per-home device parameters.

Every value read is checked: a missing file or column, a NaN or a value outside its physical range,
or a file shorter than the schema's simulation window stops the load with an error that names the
file, the column and the CSV line. Rows beyond the window are not part of the simulation (as in
CityLearn). The one documented fill: a connected EV row with no departure time gets the hours until
the charger state leaves 1 (the bundled 2022 data has such rows); the count is in ``notes``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .bundled import resolve_dataset
from .profiles import GRID_CHANNELS, HOME_CHANNELS, H, Profiles

log = logging.getLogger(__name__)

#: Water heated from mains (10 degC) to 50 degC: litres of hot water per kWh of DHW thermal demand.
LITRES_PER_KWH_DHW = 3600.0 / (4.186 * 40.0)
EV_CONNECTED_STATE = 1  # CityLearn charger state: 1 = an EV is plugged in


@dataclass(frozen=True)
class BuildingSpec:
    """Device sizes of one CityLearn building, straight from schema.json (kW, kWh)."""

    name: str
    battery_kwh: float = 0.0
    battery_kw: float = 0.0
    battery_efficiency: float = 0.9
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
    if path.exists():
        return path
    gz = root / (name + ".gz")
    if gz.exists():
        return gz
    raise FileNotFoundError(f"CityLearn dataset file not found: {path} (nor {gz.name})")


class _Table:
    """One CSV of the dataset, cut to the simulation window, with checked column access."""

    def __init__(self, root: Path, name: str, window: tuple[int, int], columns: list[str]) -> None:
        self.path = data_file(root, name)
        self.first_row = window[0]
        df = pd.read_csv(self.path)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{self.path}: missing column(s) {missing}; found {list(df.columns)}")
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
    connected = state == EV_CONNECTED_STATE
    capacity = table.column("electric_vehicle_battery_capacity_khw", 1e-3, 1e4, rows=connected, unit=" kWh")
    soc = table.column("current_soc", 0, 100, rows=connected, unit=" %")
    target = table.column("electric_vehicle_required_soc_departure", 0, 100, rows=connected, unit=" %")
    departure = pd.to_numeric(table.df["electric_vehicle_departure_time"], errors="coerce").to_numpy(dtype=float)
    missing = connected & ~np.isfinite(departure)
    bad = connected & np.isfinite(departure) & (departure < 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{table.path}: column 'electric_vehicle_departure_time' must be >= 0 h, got "
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


def _window(schema: dict, root: Path) -> tuple[int, int]:
    start = int(schema.get("simulation_start_time_step", 0))
    end = schema.get("simulation_end_time_step")
    if end is None:  # no window in the schema: the weather file's length
        first = next(iter(schema["buildings"].values()))
        end = len(pd.read_csv(data_file(root, first["weather"]), usecols=[0])) - 1
    end = int(end)
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
    schema = json.loads(schema_path.read_text())
    dt_s = int(schema.get("seconds_per_time_step", 3600))
    entries = [(name, b) for name, b in schema.get("buildings", {}).items() if b.get("include", True)]
    if not entries:
        raise ValueError(f"{schema_path}: no building has include=true")
    window = _window(schema, root)
    n_rows = window[1] - window[0]
    first = entries[0][1]
    weather = _Table(root, first["weather"], window, ["outdoor_dry_bulb_temperature"])
    pricing = _Table(root, first["pricing"], window, ["electricity_pricing"])
    carbon = _Table(root, first["carbon_intensity"], window, ["carbon_intensity"])

    notes: list[str] = []
    home = np.zeros((n_rows, len(entries), len(HOME_CHANNELS)), dtype=np.float32)
    specs = []
    for k, (name, b) in enumerate(entries):
        sim = _Table(root, b["energy_simulation"], window, ["non_shiftable_load", "solar_generation"])
        home[:, k, H["base_load_kw"]] = sim.column("non_shiftable_load", 0.0, 1e5, unit=" kW")
        home[:, k, H["pv_kw_per_kwp"]] = sim.column("solar_generation", 0.0, 2000.0, unit=" W/kW") / 1000.0
        if "dhw_demand" in sim.df:
            home[:, k, H["dhw_draw_l"]] = sim.column("dhw_demand", 0.0, 1e5, unit=" kWh") * LITRES_PER_KWH_DHW
        chargers = b.get("chargers") or {}
        charger_kw = discharge_kw = 0.0
        charger_eff = 0.95
        if chargers:
            cname, charger = next(iter(chargers.items()))
            attrs = charger.get("attributes", {})
            charger_kw = float(attrs.get("max_charging_power", attrs.get("nominal_power", 0.0)))
            discharge_kw = float(attrs.get("max_discharging_power", 0.0))
            charger_eff = float(attrs.get("efficiency", 0.95))
            table = _Table(root, charger["charger_simulation"], window,
                           ["electric_vehicle_charger_state", "electric_vehicle_battery_capacity_khw", "current_soc",
                            "electric_vehicle_departure_time", "electric_vehicle_required_soc_departure"])
            home[:, k, H["ev_connected"]: H["ev_target_soc"] + 1] = _ev_channels(table, dt_s / 3600.0, notes)
        storage = (b.get("electrical_storage") or {}).get("attributes", {})
        pv = (b.get("pv") or {}).get("attributes", {})
        specs.append(BuildingSpec(
            name=name,
            battery_kwh=float(storage.get("capacity", 0.0)),
            battery_kw=float(storage.get("nominal_power", 0.0)),
            battery_efficiency=float(storage.get("efficiency", 0.9)),
            pv_kwp=float(pv.get("nominal_power", 0.0)),
            charger_kw=charger_kw,
            charger_discharge_kw=discharge_kw,
            charger_efficiency=charger_eff,
            charger_names=tuple(chargers),
        ))
    grid = np.zeros((n_rows, len(GRID_CHANNELS)))
    grid[:, 0] = weather.column("outdoor_dry_bulb_temperature", -90.0, 70.0, unit=" degC")
    irr = [c for c in ("diffuse_solar_irradiance", "direct_solar_irradiance") if c in weather.df]
    # CityLearn gives diffuse + direct irradiance; their sum approximates GHI for solar gains.
    for c in irr:
        grid[:, 1] += weather.column(c, 0.0, 2000.0, unit=" W/m2")
    grid[:, 2] = pricing.column("electricity_pricing", -100.0, 100.0, unit=" $/kWh")
    grid[:, 3] = export_price
    grid[:, 4] = carbon.column("carbon_intensity", 0.0, 10.0, unit=" kg/kWh")
    for note in notes:
        log.info("%s", note)
    profiles = Profiles(
        dt_s=dt_s, home=np.ascontiguousarray(home), grid=grid,
        start=str(schema.get("start_date", "2000-01-01")), names=tuple(s.name for s in specs),
        source=f"CityLearn dataset {root.name}",
    )
    return CityLearnDataset(path=root, profiles=profiles, buildings=tuple(specs), schema=schema, notes=tuple(notes))
