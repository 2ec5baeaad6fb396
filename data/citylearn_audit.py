"""What a CityLearn dataset holds, sorted into what vpprl maps, what it documents as not simulated, and
what it refuses: nothing is dropped silently.

A building key or a data column that vpprl does not map is an error naming it, unless it carries no data
(an all-zero or all-empty column, an empty device entry). Two documented exceptions are reported in
``CityLearnDataset.notes`` instead (the bundled 2022 data holds both): washing machines (a shiftable
appliance vpprl does not model) and chargers beyond a building's first (a vpprl home has one charger).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: building keys the loader maps (or that carry no simulation data)
MAPPED_KEYS = frozenset({"include", "type", "energy_simulation", "weather", "carbon_intensity", "pricing",
                         "inactive_observations", "inactive_actions", "electrical_storage", "pv", "chargers",
                         "cooling_device", "heating_device", "dhw_device"})
#: CityLearn's plain building (demands met in full); dynamics buildings model indoor temperature instead
PLAIN_BUILDING_TYPES = frozenset({None, "citylearn.building.Building"})
STORAGE_TANKS = ("cooling_storage", "heating_storage", "dhw_storage")
NOTED_KEYS = {"washing_machines": "washing machines are not simulated (their shiftable load is left out)"}
#: energy-simulation columns the loader maps, and calendar columns it reads its clock from instead
MAPPED_COLUMNS = frozenset({"non_shiftable_load", "solar_generation", "dhw_demand", "cooling_demand",
                            "heating_demand"})
CALENDAR_COLUMNS = frozenset({"month", "hour", "minutes", "day_type", "daylight_savings_status"})


def audit_building(name: str, building: dict, sim: pd.DataFrame, sim_name: str) -> list[str]:
    """Notes for the documented exceptions; ValueError for anything else vpprl does not map."""
    notes = []
    if building.get("type") not in PLAIN_BUILDING_TYPES or building.get("dynamics"):
        raise ValueError(f"schema.json: buildings.{name}.type {building.get('type')!r} (thermal dynamics, indoor "
                         f"temperatures under control) is not supported: vpprl maps CityLearn's plain Building, "
                         f"whose cooling, heating and hot-water demands are met in full")
    for key in STORAGE_TANKS:
        tank = building.get(key) or {}
        if tank and (tank.get("autosize") or (tank.get("attributes") or {}).get("capacity")):
            raise ValueError(f"schema.json: buildings.{name}.{key} (a thermal storage tank) is not supported by "
                             f"vpprl's CityLearn loader yet; set it to null to load the building without it")
    devices = [(key, v) for key, v in building.items() if isinstance(v, dict)]
    devices += [(f"chargers.{c}", v) for c, v in (building.get("chargers") or {}).items() if isinstance(v, dict)]
    for key, value in devices:
        if value.get("autosize") and key not in STORAGE_TANKS:
            raise ValueError(f"schema.json: buildings.{name}.{key}.autosize is true: CityLearn would size it at "
                             f"random; give its attributes and set autosize to false")
    for key, value in building.items():
        if key in STORAGE_TANKS or key in MAPPED_KEYS or not value:
            continue
        if key in NOTED_KEYS:
            notes.append(f"{name}: {NOTED_KEYS[key]}")
            continue
        kind = value.get("type", "") if isinstance(value, dict) else ""
        raise ValueError(f"schema.json: buildings.{name}.{key} {kind!r} is not supported by vpprl's CityLearn "
                         f"loader (it maps {sorted(MAPPED_KEYS - {'include', 'type'})}); remove it or set "
                         f"it to null to load the rest")
    chargers = building.get("chargers") or {}
    if len(chargers) > 1:
        notes.append(f"{name}: chargers {list(chargers)[1:]} are not simulated (a vpprl home has one charger; "
                     f"{next(iter(chargers))} is)")
    for column in sim.columns:
        if column in MAPPED_COLUMNS or column in CALENDAR_COLUMNS:
            continue
        values = pd.to_numeric(sim[column], errors="coerce").to_numpy(dtype=float)
        if np.nan_to_num(values).any():
            raise ValueError(f"{sim_name}: column {column!r} holds data vpprl does not map yet (e.g. cooling or "
                             f"heating demand, indoor temperatures or setpoints, occupancy, outages); it maps "
                             f"{sorted(MAPPED_COLUMNS)}")
    return notes
