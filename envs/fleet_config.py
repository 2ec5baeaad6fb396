"""Fleet configuration: how many homes, which devices they own, how big, how diverse.

A plain dataclass (usable without Hydra, registered as a structured config later); every field
is validated at construction with an error naming the field and its allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ValueError(f"FleetConfig.{name} must be in [{lo}, {hi}], got {value!r}")


def _check_interval(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if len(value) != 2 or not (lo <= value[0] <= value[1] <= hi):
        raise ValueError(f"FleetConfig.{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")


@dataclass
class Ownership:
    """Probability that a home owns each controllable device class (0..1)."""

    battery: float = 0.4
    ev: float = 0.4
    pv: float = 0.6
    water_heater: float = 0.6
    thermostat: float = 0.8
    flex_load: float = 0.005  # share of sites that are C&I sites with a flexible load


@dataclass
class FleetConfig:
    """A fleet of homes built from shared profiles (all sizes in kW, kWh, litres, degC).

    Ranges (low, high) are sampled uniformly per home; choices are sampled uniformly.
    """

    num_homes: int = 100
    seed: int = 0
    ownership: Ownership = field(default_factory=Ownership)
    #: share of EV chargers that can discharge (V2G)
    v2g_fraction: float = 0.3
    #: share of homes with vulnerable occupants (infant, elderly): tighter comfort band
    vulnerable_fraction: float = 0.1
    #: per-home base-load multiplier is lognormal(0, sigma)
    load_scale_sigma: float = 0.3
    #: homes read their load, hot-water and EV channels shifted by up to this many whole days (PV and the
    #: weather are never shifted) ...
    max_day_shift: int = 14
    #: ... plus a jitter of up to +- this many minutes (rounded to profile rows)
    time_jitter_minutes: float = 45.0
    battery_kwh: tuple[float, float] = (5.0, 15.0)
    battery_c_rate: tuple[float, float] = (0.35, 0.5)  # kW per kWh
    battery_reserve_soc: tuple[float, float] = (0.1, 0.3)
    pv_kwp: tuple[float, float] = (3.0, 10.0)
    #: per-home shading and soiling: fraction of the orientation's output a home's PV delivers. PV diversity
    #: comes from orientation and tilt (the profiles), size and these losses, never from a time shift: PV
    #: stays aligned with the weather that drives it.
    pv_derate: tuple[float, float] = (0.85, 1.0)
    ev_charger_kw: tuple[float, ...] = (7.2, 11.0)
    water_heater_litres: tuple[float, float] = (150.0, 300.0)
    water_heater_kw: tuple[float, float] = (3.8, 5.5)
    #: heat pumps are sized to the home's design load (heating at the data's 99 % design temperature, cooling
    #: at its 1 % one, see ``fleet_builder.size_heat_pumps``) times this oversize factor, as installers do
    heat_pump_oversize: tuple[float, float] = (1.1, 1.4)
    home_resistance_c_per_kw: tuple[float, float] = (2.5, 5.0)
    home_capacitance_kwh_per_c: tuple[float, float] = (4.0, 10.0)
    comfort_band_c: tuple[float, float] = (20.0, 24.0)
    vulnerable_comfort_band_c: tuple[float, float] = (21.0, 23.0)
    flex_load_kw: tuple[float, float] = (20.0, 100.0)
    site_import_limit_kw: float = 25.0
    site_export_limit_kw: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.ownership, dict):
            self.ownership = Ownership(**self.ownership)
        if not isinstance(self.num_homes, int) or not 1 <= self.num_homes <= 1_000_000:
            raise ValueError(f"FleetConfig.num_homes must be an integer in [1, 1000000], got {self.num_homes!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"FleetConfig.seed must be an integer in [0, 2**63), got {self.seed!r}")
        for f in fields(Ownership):
            v = getattr(self.ownership, f.name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"FleetConfig.ownership.{f.name} must be in [0, 1], got {v!r}")
        _check_range("v2g_fraction", self.v2g_fraction, 0.0, 1.0)
        _check_range("vulnerable_fraction", self.vulnerable_fraction, 0.0, 1.0)
        _check_range("load_scale_sigma", self.load_scale_sigma, 0.0, 2.0)
        _check_range("max_day_shift", self.max_day_shift, 0, 364)
        _check_range("time_jitter_minutes", self.time_jitter_minutes, 0.0, 720.0)
        _check_interval("battery_kwh", self.battery_kwh, 0.1, 1000.0)
        _check_interval("battery_c_rate", self.battery_c_rate, 0.01, 5.0)
        _check_interval("battery_reserve_soc", self.battery_reserve_soc, 0.0, 0.9)
        _check_interval("pv_kwp", self.pv_kwp, 0.1, 1000.0)
        _check_interval("pv_derate", self.pv_derate, 0.1, 1.0)
        if not self.ev_charger_kw or any(not 1.0 <= v <= 350.0 for v in self.ev_charger_kw):
            raise ValueError(f"FleetConfig.ev_charger_kw must be a non-empty list of values in [1, 350], "
                             f"got {self.ev_charger_kw!r}")
        _check_interval("water_heater_litres", self.water_heater_litres, 20.0, 2000.0)
        _check_interval("water_heater_kw", self.water_heater_kw, 0.5, 20.0)
        _check_interval("heat_pump_oversize", self.heat_pump_oversize, 1.0, 3.0)
        _check_interval("home_resistance_c_per_kw", self.home_resistance_c_per_kw, 0.1, 50.0)
        _check_interval("home_capacitance_kwh_per_c", self.home_capacitance_kwh_per_c, 0.5, 200.0)
        _check_interval("comfort_band_c", self.comfort_band_c, 10.0, 30.0)
        _check_interval("vulnerable_comfort_band_c", self.vulnerable_comfort_band_c, 10.0, 30.0)
        _check_interval("flex_load_kw", self.flex_load_kw, 1.0, 100_000.0)
        _check_range("site_import_limit_kw", self.site_import_limit_kw, 1.0, 1e6)
        _check_range("site_export_limit_kw", self.site_export_limit_kw, 0.0, 1e6)
