"""Loader for datasets in the CityLearn format (schema.json + per-building CSVs).

Works on any CityLearn dataset directory, e.g. the 2022 challenge data with EV chargers.
Each building becomes one profile; its schema attributes become device specs that the fleet
builder turns into per-home device parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .profiles import GRID_CHANNELS, HOME_CHANNELS, H, Profiles

#: Water heated from mains (10 degC) to 50 degC: litres of hot water per kWh of DHW thermal demand.
LITRES_PER_KWH_DHW = 3600.0 / (4.186 * 40.0)


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
    """A CityLearn dataset: one profile per building plus each building's device sizes."""

    path: Path
    profiles: Profiles
    buildings: tuple[BuildingSpec, ...]
    schema: dict = field(repr=False, default_factory=dict)


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"CityLearn dataset file not found: {path}")
    return path


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    df = pd.read_csv(_require(path))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing columns {missing}; found {list(df.columns)}")
    return df


def _ev_channels(path: Path, n_rows: int) -> np.ndarray:
    """EV session channels (ev_connected .. ev_target_soc) from a CityLearn charger file.

    Charger state 1 means an EV is plugged in; each contiguous run of state-1 rows is one
    session. Arrival SoC is the SoC read at the session's first row (CityLearn's later rows
    are its own simulation), target SoC is ``electric_vehicle_required_soc_departure``.
    """
    df = _read_csv(
        path,
        ["electric_vehicle_charger_state", "electric_vehicle_battery_capacity_khw", "current_soc",
         "electric_vehicle_departure_time", "electric_vehicle_required_soc_departure"],
    ).iloc[:n_rows]
    connected = (df["electric_vehicle_charger_state"].to_numpy() == 1)
    session = np.cumsum(np.r_[True, connected[1:] != connected[:-1]])
    first = pd.Series(df["current_soc"].to_numpy(dtype=float)).groupby(session).transform("first").to_numpy()
    out = np.zeros((len(df), 5), dtype=np.float64)
    out[:, 0] = connected
    out[:, 1] = np.nan_to_num(df["electric_vehicle_departure_time"].to_numpy(dtype=float)) + 1.0
    out[:, 2] = np.nan_to_num(df["electric_vehicle_battery_capacity_khw"].to_numpy(dtype=float))
    out[:, 3] = np.clip(np.nan_to_num(first) / 100.0, 0.0, 1.0)
    out[:, 4] = np.clip(np.nan_to_num(df["electric_vehicle_required_soc_departure"].to_numpy(dtype=float)) / 100.0,
                        0.0, 1.0)
    out[~connected, 1:] = 0.0
    return out


def load_citylearn(path: str | Path, export_price: float = 0.0) -> CityLearnDataset:
    """Read a CityLearn-format dataset directory into shared profiles and building specs.

    :param path: directory holding ``schema.json`` and the CSVs it names.
    :param export_price: feed-in compensation in $/kWh (CityLearn datasets carry none).
    """
    root = Path(path)
    schema = json.loads(_require(root / "schema.json").read_text())
    dt_s = int(schema.get("seconds_per_time_step", 3600))
    entries = [(name, b) for name, b in schema["buildings"].items() if b.get("include", True)]
    if not entries:
        raise ValueError(f"{root}/schema.json: no building has include=true")
    first = entries[0][1]
    weather = _read_csv(root / first["weather"], ["outdoor_dry_bulb_temperature"])
    pricing = _read_csv(root / first["pricing"], ["electricity_pricing"])
    carbon = _read_csv(root / first["carbon_intensity"], ["carbon_intensity"])
    n_rows = min(len(weather), len(pricing), len(carbon))

    home = np.zeros((n_rows, len(entries), len(HOME_CHANNELS)), dtype=np.float32)
    specs = []
    for k, (name, b) in enumerate(entries):
        sim = _read_csv(root / b["energy_simulation"], ["non_shiftable_load", "solar_generation"])
        n_rows = min(n_rows, len(sim))
        home[: len(sim[:n_rows]), k, H["base_load_kw"]] = sim["non_shiftable_load"].to_numpy()[:n_rows]
        home[:n_rows, k, H["pv_kw_per_kwp"]] = sim["solar_generation"].to_numpy()[:n_rows] / 1000.0
        if "dhw_demand" in sim:
            home[:n_rows, k, H["dhw_draw_l"]] = sim["dhw_demand"].fillna(0).to_numpy()[:n_rows] * LITRES_PER_KWH_DHW
        chargers = b.get("chargers") or {}
        charger_kw = discharge_kw = 0.0
        charger_eff = 0.95
        if chargers:
            cname, charger = next(iter(chargers.items()))
            attrs = charger.get("attributes", {})
            charger_kw = float(attrs.get("max_charging_power", attrs.get("nominal_power", 0.0)))
            discharge_kw = float(attrs.get("max_discharging_power", 0.0))
            charger_eff = float(attrs.get("efficiency", 0.95))
            ev = _ev_channels(root / charger["charger_simulation"], n_rows)
            home[: len(ev), k, H["ev_connected"]: H["ev_target_soc"] + 1] = ev
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
    grid[:, 0] = weather["outdoor_dry_bulb_temperature"].to_numpy()[:n_rows]
    irr = [c for c in ("diffuse_solar_irradiance", "direct_solar_irradiance") if c in weather]
    # CityLearn gives diffuse + direct irradiance; their sum approximates GHI for solar gains.
    grid[:, 1] = weather[irr].sum(axis=1).to_numpy()[:n_rows] if irr else 0.0
    grid[:, 2] = pricing["electricity_pricing"].to_numpy()[:n_rows]
    grid[:, 3] = export_price
    grid[:, 4] = carbon["carbon_intensity"].to_numpy()[:n_rows]
    profiles = Profiles(
        dt_s=dt_s, home=np.ascontiguousarray(home[:n_rows]), grid=grid,
        start=str(schema.get("start_date", "2000-01-01")), names=tuple(s.name for s in specs),
        source=f"CityLearn dataset {root.name}",
    )
    return CityLearnDataset(path=root, profiles=profiles, buildings=tuple(specs), schema=schema)
