"""Build per-home device parameters for a fleet of 1 to 1,000,000 homes from shared profiles.

Seeded and reproducible: the same (config, profiles) always gives the same fleet. Homes keep
an index into the K shared profiles plus a scale and a time shift, never their own copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.citylearn import CityLearnDataset
from ..data.profiles import Profiles
from .devices import BatteryCurves, BatteryParams, EvChargerParams, FlexLoadParams, ThermostatParams, WaterHeaterParams
from .devices.thermostat import cop_cooling, cop_heating
from .fleet_config import FleetConfig

#: dtype of all per-home physical arrays: float32 halves the memory traffic of a step (the step is
#: memory-bound at fleet scale); totals and KPIs are accumulated in float64.
DTYPE = np.float32


def _cast(obj) -> None:
    """Cast every float array field of a dataclass (recursively) to DTYPE, in place."""
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            setattr(obj, name, value.astype(DTYPE))
        elif hasattr(value, "__dataclass_fields__"):
            _cast(value)


@dataclass
class FleetLayout:
    """Everything per home that does not change during an episode."""

    profile_index: np.ndarray  # (N,) int64 into profiles
    shift_s: np.ndarray  # (N,) int64 time shift in seconds (the fleet converts it to rows at its resolution)
    load_scale: np.ndarray  # (N,) multiplier of the base load and hot-water draws
    pv_kwp: np.ndarray  # (N,) installed PV, kWp
    pv_derate: np.ndarray  # (N,) shading and soiling: fraction of the orientation's per-kWp output delivered
    battery: BatteryParams
    ev: EvChargerParams
    water_heater: WaterHeaterParams
    thermostat: ThermostatParams
    flex_load: FlexLoadParams
    vulnerable: np.ndarray  # (N,) bool
    site_import_limit_kw: np.ndarray
    site_export_limit_kw: np.ndarray

    @property
    def num_homes(self) -> int:
        return len(self.profile_index)


def concat_layouts(layouts: Sequence[FleetLayout]) -> FleetLayout:
    """One layout holding the homes of ``layouts`` one after another (every per-home array concatenated, optional
    ones kept only when every layout has them)."""

    def join(parts: list):
        first = parts[0]
        if first is None or any(part is None for part in parts):
            if any(part is not None for part in parts):
                raise ValueError("concat_layouts: an optional per-home field is set in some layouts only")
            return None
        if isinstance(first, np.ndarray):
            return np.concatenate(parts)
        if dataclasses.is_dataclass(first):
            return type(first)(**{f.name: join([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(first)})
        raise TypeError(f"concat_layouts: cannot join a field of type {type(first).__name__}")

    return join(list(layouts))


def design_temperatures_c(profiles: Profiles) -> tuple[float, float]:
    """(heating, cooling) design outdoor temperatures of the data: its 1st and 99th percentiles (the
    ASHRAE 99 % heating and 1 % cooling design conditions, computed from the data itself)."""
    t_out = profiles.grid_channel("outdoor_temp_c")
    return float(np.percentile(t_out, 1.0)), float(np.percentile(t_out, 99.0))


def design_heat_pump_kw(tp: ThermostatParams, profiles: Profiles) -> np.ndarray:
    """Rated electrical kW that holds each home's comfort band at the design conditions, in steady state:
    heating the band's lower edge at the heating design temperature with no gains (as heating loads are
    computed), cooling the upper edge at the cooling design temperature against internal gains and full sun
    on the windows. Thermal load = temperature difference / R; electrical = thermal / COP at that
    temperature (``cop_heating`` / ``cop_cooling``)."""
    t_heat, t_cool = design_temperatures_c(profiles)
    r = tp.resistance_c_per_kw
    heat_kw = np.maximum(tp.comfort_low_c - t_heat, 0.0) / r / cop_heating(t_heat)
    sun_kw = tp.solar_aperture_m2 * float(profiles.grid_channel("ghi_w_m2").max()) / 1000.0
    cool_kw = np.maximum((t_cool - tp.comfort_high_c) / r + tp.internal_gain_kw + sun_kw, 0.0) / cop_cooling(t_cool)
    return np.maximum(heat_kw, cool_kw)


def _uniform(rng: np.random.Generator, interval: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(interval[0], interval[1], n)


def build_fleet(config: FleetConfig, profiles: Profiles) -> FleetLayout:
    """Sample a fleet: ownership, device sizes, comfort bands, profile assignment and shifts."""
    n = config.num_homes
    rng = np.random.default_rng(config.seed)
    own = config.ownership
    has = {name: rng.random(n) < getattr(own, name)
           for name in ("battery", "ev", "pv", "water_heater", "thermostat", "flex_load")}

    jitter_rows = int(round(config.time_jitter_minutes * 60 / profiles.dt_s))
    shift_s = (rng.integers(0, config.max_day_shift + 1, n) * 86400
               + rng.integers(-jitter_rows, jitter_rows + 1, n) * profiles.dt_s)

    cap = np.where(has["battery"], _uniform(rng, config.battery_kwh, n), 0.0)
    battery_kw = cap * _uniform(rng, config.battery_c_rate, n)
    battery = BatteryParams(
        capacity_kwh=cap, max_charge_kw=battery_kw, max_discharge_kw=battery_kw.copy(),
        charge_efficiency=np.full(n, 0.95), discharge_efficiency=np.full(n, 0.95),
        soc_min=np.full(n, 0.05), soc_max=np.full(n, 0.95),
        reserve_soc=_uniform(rng, config.battery_reserve_soc, n), degradation_cost_per_kwh=np.full(n, 0.02),
    )
    charger_kw = np.where(has["ev"], rng.choice(np.asarray(config.ev_charger_kw), n), 0.0)
    v2g = has["ev"] & (rng.random(n) < config.v2g_fraction)
    ev = EvChargerParams(max_charge_kw=charger_kw, max_discharge_kw=np.where(v2g, charger_kw, 0.0),
                         efficiency=np.full(n, 0.93), v2g_min_soc=np.full(n, 0.3))
    vulnerable = rng.random(n) < config.vulnerable_fraction
    band_lo = np.where(vulnerable, config.vulnerable_comfort_band_c[0], config.comfort_band_c[0])
    band_hi = np.where(vulnerable, config.vulnerable_comfort_band_c[1], config.comfort_band_c[1])
    resistance = _uniform(rng, config.home_resistance_c_per_kw, n)
    capacitance = _uniform(rng, config.home_capacitance_kwh_per_c, n)
    oversize = _uniform(rng, config.heat_pump_oversize, n)  # where the rated kW used to be drawn
    thermostat = ThermostatParams(
        resistance_c_per_kw=resistance,
        capacitance_kwh_per_c=capacitance,
        heat_pump_kw=np.zeros(n),
        comfort_low_c=band_lo, comfort_high_c=band_hi,
        solar_aperture_m2=_uniform(rng, (1.0, 4.0), n), internal_gain_kw=_uniform(rng, (0.2, 0.6), n),
        balance_temp_c=band_lo - 2.0,
    )
    thermostat.heat_pump_kw = np.where(has["thermostat"], oversize * design_heat_pump_kw(thermostat, profiles), 0.0)
    water_heater = WaterHeaterParams(
        volume_l=_uniform(rng, config.water_heater_litres, n),
        element_kw=np.where(has["water_heater"], _uniform(rng, config.water_heater_kw, n), 0.0),
        comfort_low_c=np.full(n, 45.0), comfort_high_c=np.full(n, 65.0), setpoint_c=np.full(n, 52.0),
        max_temp_c=np.full(n, 75.0), ua_kw_per_c=np.full(n, 0.0025), inlet_c=np.full(n, 12.0),
        ambient_c=np.full(n, 20.0),
    )
    flex_kw = np.where(has["flex_load"], _uniform(rng, config.flex_load_kw, n), 0.0)
    flex = FlexLoadParams(scale_kw=flex_kw, max_curtail_fraction=np.full(n, 0.3), max_rebound_kw=0.3 * flex_kw,
                          max_backlog_kwh=1.2 * flex_kw)
    # C&I sites get a service connection sized for their load: the G25 baseline peaks at 2.35 x its
    # mean, plus the rebound allowance
    imp = np.full(n, config.site_import_limit_kw) + 3.0 * flex_kw
    exp = np.full(n, config.site_export_limit_kw)
    layout = FleetLayout(
        profile_index=rng.integers(0, profiles.num_profiles, n),
        shift_s=shift_s.astype(np.int64),
        load_scale=rng.lognormal(0.0, config.load_scale_sigma, n) if config.load_scale_sigma > 0 else np.ones(n),
        pv_kwp=np.where(has["pv"], _uniform(rng, config.pv_kwp, n), 0.0),
        pv_derate=np.ones(n),
        battery=battery, ev=ev, water_heater=water_heater, thermostat=thermostat, flex_load=flex,
        vulnerable=vulnerable, site_import_limit_kw=imp, site_export_limit_kw=exp,
    )
    # drawn last, so that adding it left every other draw of a seed unchanged
    layout.pv_derate = _uniform(rng, config.pv_derate, n)
    _cast(layout)
    return layout


def build_citylearn_fleet(dataset: CityLearnDataset, config: FleetConfig | None = None,
                          replicate: bool = False) -> FleetLayout:
    """A fleet from a CityLearn dataset.

    With ``replicate=False`` (default) there is exactly one home per building, with the
    building's own battery, PV and charger from schema.json, no shifts and no scaling: the
    dataset as published. Thermostat, water heater and flexible load follow ``config.ownership``
    (CityLearn 2022 has no controllable ones: pass ownership 0 to leave them out).
    With ``replicate=True``, ``config.num_homes`` homes are sampled from the buildings with the
    config's scaling and shifts, keeping each building's device sizes.
    """
    profiles = dataset.profiles
    k = profiles.num_profiles
    if config is None:
        config = FleetConfig(num_homes=k)
    if not replicate:
        config = FleetConfig(**{**config.__dict__, "num_homes": k, "load_scale_sigma": 0.0, "max_day_shift": 0,
                                "time_jitter_minutes": 0.0})
    layout = build_fleet(config, profiles)
    idx = np.arange(config.num_homes) % k if not replicate else layout.profile_index
    layout.profile_index = idx
    b = dataset.buildings
    spec = lambda attr: np.array([getattr(b[i], attr) for i in idx], dtype=float)
    cap = spec("battery_kwh")
    layout.battery.capacity_kwh = cap
    layout.battery.max_charge_kw = spec("battery_kw")
    layout.battery.max_discharge_kw = spec("battery_kw")
    eff = np.sqrt(spec("battery_efficiency"))  # CityLearn's efficiency is round-trip
    layout.battery.charge_efficiency = np.where(cap > 0, eff, 0.95)
    layout.battery.discharge_efficiency = np.where(cap > 0, eff, 0.95)
    layout.battery.soc_min = np.where(cap > 0, 1.0 - spec("battery_depth_of_discharge"), 0.0)
    layout.battery.soc_max = np.ones(len(idx))
    layout.battery.initial_soc = spec("battery_initial_soc")
    layout.battery.curves = _citylearn_battery_curves([b[i] for i in idx])
    layout.pv_kwp = spec("pv_kwp")
    if not replicate:  # as published: the building's own PV output, no per-home losses, no backup reserve
        layout.pv_derate = np.ones(len(idx))
        layout.battery.reserve_soc = np.zeros(len(idx))  # CityLearn has none (its batteries start empty)
    layout.ev.max_charge_kw = spec("charger_kw")
    layout.ev.max_discharge_kw = spec("charger_discharge_kw")
    layout.ev.efficiency = np.where(spec("charger_kw") > 0, spec("charger_efficiency"), 0.93)
    _cast(layout)
    return layout


def _citylearn_battery_curves(buildings: list) -> BatteryCurves:
    """CityLearn's battery model per home (curves padded to a common number of breakpoints by repeating
    their last point, which leaves the interpolation unchanged)."""
    def table(attr: str) -> tuple[np.ndarray, np.ndarray]:
        curves = [getattr(b, attr) for b in buildings]
        k = max(len(c) for c in curves)
        padded = np.array([list(c) + [(1.0 + 1e-9 * (j + 1), c[-1][1]) for j in range(k - len(c))] for c in curves])
        return padded[:, :, 0], padded[:, :, 1]

    power_soc, power_frac = table("battery_power_curve")
    efficiency_power, efficiency = table("battery_efficiency_curve")
    value = lambda attr: np.array([getattr(b, attr) for b in buildings], dtype=float)
    return BatteryCurves(nominal_kw=value("battery_kw"), power_soc=power_soc, power_frac=power_frac,
                         efficiency_power=efficiency_power, efficiency=efficiency,
                         standby_loss_per_h=value("battery_standby_loss_per_h"),
                         capacity_loss_coefficient=value("battery_capacity_loss_coefficient"))
