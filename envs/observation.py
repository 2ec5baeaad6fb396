"""Observation layout: per-home features plus global features, all O(1)-scaled and fleet-size free.

The centralized env flattens ``home`` (N, F) row-major and appends ``globals`` (G,); the
multi-agent env gives home i the row ``home[i]`` followed by ``globals``. Names are exported
so the policy export manifest can record the layout.
"""

from __future__ import annotations

import numpy as np

from ..data.profiles import G
from .fleet import BATTERY, EV, FLEX, THERMOSTAT, WATER_HEATER, Fleet
from .fleet_builder import FleetLayout

HOME_FEATURES: tuple[str, ...] = (
    # the site's metered and own-control net load over its power scale (10 kW + a C&I site's flexible load
    # scale, ``site_power_scale_kw``): a 100 kW site reads like a home instead of 10x outside the inputs' range
    "base_load_kw/5", "pv_available_kw/5", "net_kw_last/site_kw", "default_kw/site_kw",
    "battery_soc", "battery_kwh/20", "battery_reserve_soc",
    "ev_connected", "ev_needed_kwh/50", "ev_hours_to_departure/24", "ev_charger_kw/11", "ev_v2g",
    "indoor_temp_rel_band", "hvac_heating_mode", "heat_pump_kw/5", "vulnerable",
    "indoor_next_off_rel_band", "indoor_next_full_rel_band",
    "tank_temp_rel_band", "water_heater_kw/5", "tank_next_off_rel_band", "tank_next_full_rel_band",
    "flex_baseline_kw/100", "flex_backlog_rel",
    # what actions +1 / -1 move each device by this step (kW above / below its own control), from the
    # device-reported limits: the same action means a different power in every home and every step
    "battery_kw_up/5", "battery_kw_down/5", "ev_kw_up/10", "ev_kw_down/10",
    "water_heater_kw_up/5", "water_heater_kw_down/5", "thermostat_kw_up/5", "thermostat_kw_down/5",
    "flex_kw_up/100", "flex_kw_down/100",
    # the battery / EV action that alone brings the home's own-control net load to zero (clipped to [-1, 1];
    # 0 without the device): discharge to cover the load and no more (exports earn little), charge from a surplus
    "battery_action_to_zero_net", "ev_action_to_zero_net",
)
#: (feature name prefix, device class index, kW scale) of the action-range features
_RANGE_FEATURES: tuple[tuple[str, int, float], ...] = (
    ("battery", BATTERY, 5.0), ("ev", EV, 10.0), ("water_heater", WATER_HEATER, 5.0),
    ("thermostat", THERMOSTAT, 5.0), ("flex", FLEX, 100.0))
BASE_GLOBAL_FEATURES: tuple[str, ...] = (
    "sin_time_of_day", "cos_time_of_day", "sin_day_of_year", "cos_day_of_year", "weekend",
    "outdoor_temp_c/40", "ghi_w_m2/1000", "price_import/0.5", "price_export/0.5", "carbon_kg_per_kwh",
    "aggregate_kw_per_home/5",
)
# Bump when a feature changes meaning or scale but keeps its name: exported policies then refuse to load.
# 2: action-range features added; 3: site net loads over the site's scale; 4: the price-arbitrage task's price
# rank features (``price_cheaper_h_next_24h/24``, ``price_dearer_h_next_24h/24``)
OBSERVATION_SCHEMA_VERSION: int = 4
#: kW that a home's net-load features are divided by; a C&I site adds its flexible load's scale
HOME_POWER_SCALE_KW: float = 10.0


def site_power_scale_kw(layout: FleetLayout) -> np.ndarray:
    """(N,) kW that each site's net-load features are divided by: 10 kW for a home, 10 kW + the flexible
    load's scale for a C&I site. Net loads of C&I sites (20-100 kW baselines) over a home's 10 kW put the
    shared policy's inputs at 5-20, far outside what homes show it (|x| < 1.5), and its every action head
    there (battery, thermostat, ...) with them."""
    return (HOME_POWER_SCALE_KW + layout.flex_load.scale_kw).astype(np.float32)


class ObservationBuilder:
    """Writes per-home features into a caller's (N, F) float32 array; static features are computed
    once and copied in as one block."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        lay = fleet.layout
        self.home = np.zeros((fleet.n, len(HOME_FEATURES)), dtype=np.float32)
        col = {name: j for j, name in enumerate(HOME_FEATURES)}
        self._col = col
        th, wh = lay.thermostat, lay.water_heater
        # rel_band(T) = (2T - lo - hi) / (hi - lo) = T * scale - offset
        self._th_scale = (2.0 / np.maximum(th.comfort_high_c - th.comfort_low_c, 1e-6)).astype(np.float32)
        self._th_offset = ((th.comfort_low_c + th.comfort_high_c) * self._th_scale / 2.0).astype(np.float32)
        self._wh_scale = (2.0 / np.maximum(wh.comfort_high_c - wh.comfort_low_c, 1e-6)).astype(np.float32)
        self._wh_offset = ((wh.comfort_low_c + wh.comfort_high_c) * self._wh_scale / 2.0).astype(np.float32)
        static = {
            "battery_kwh/20": lay.battery.capacity_kwh / 20.0, "battery_reserve_soc": lay.battery.reserve_soc,
            "ev_charger_kw/11": lay.ev.max_charge_kw / 11.0, "ev_v2g": (lay.ev.max_discharge_kw > 0),
            "heat_pump_kw/5": lay.thermostat.heat_pump_kw / 5.0, "vulnerable": lay.vulnerable,
            "water_heater_kw/5": lay.water_heater.element_kw / 5.0,
        }
        for name, v in static.items():
            self.home[:, col[name]] = v
        self._start_weekday = fleet.profiles.start_weekday
        self._start_doy = fleet.profiles.start_day_of_year
        # (up column, down column, device class, kW scale) and (column, device class), resolved once, not per step
        self._range_cols = [(col[f"{prefix}_kw_up/{scale:g}"], col[f"{prefix}_kw_down/{scale:g}"], j, scale)
                            for prefix, j, scale in _RANGE_FEATURES]
        self._zero_net_cols = [(col["battery_action_to_zero_net"], BATTERY), (col["ev_action_to_zero_net"], EV)]
        self._site_kw = site_power_scale_kw(lay)
        self._backlog_scale = np.where(lay.flex_load.max_backlog_kwh > 0, 1.0 / np.maximum(
            lay.flex_load.max_backlog_kwh, 1e-9), 0.0)

    def build_home(self, default_kw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Fill ``out`` (N, F) (or an internal buffer) with this step's per-home features."""
        f = self.fleet
        c = self._col
        h = self.home if out is None else out
        if out is not None:
            h[...] = self.home  # static columns
        h[:, c["base_load_kw/5"]] = f.base_load_kw / 5.0
        h[:, c["pv_available_kw/5"]] = f.pv.available_kw / 5.0
        np.divide(f.net_kw, self._site_kw, out=h[:, c["net_kw_last/site_kw"]], casting="unsafe")
        np.divide(default_kw, self._site_kw, out=h[:, c["default_kw/site_kw"]], casting="unsafe")
        h[:, c["battery_soc"]] = f.battery.soc
        h[:, c["ev_connected"]] = f.ev.connected
        h[:, c["ev_needed_kwh/50"]] = f.ev.energy_needed_kwh / 50.0
        h[:, c["ev_hours_to_departure/24"]] = f.ev.hours_to_departure / 24.0
        th = f.thermostat
        h[:, c["indoor_temp_rel_band"]] = th.temp_c * self._th_scale - self._th_offset
        h[:, c["hvac_heating_mode"]] = th.heating
        # where the next step ends with the device off / at full power: the home's thermal dynamics
        # (RC, gains, weather, hot-water draw) in the band's units, so a shared policy can plan with them
        h[:, c["indoor_next_off_rel_band"]] = th.free_temp_c * self._th_scale - self._th_offset
        h[:, c["indoor_next_full_rel_band"]] = ((th.free_temp_c + th.gain_c_per_kw * th.p_max) * self._th_scale
                                                - self._th_offset)
        wh = f.water_heater
        h[:, c["tank_temp_rel_band"]] = wh.temp_c * self._wh_scale - self._wh_offset
        h[:, c["tank_next_off_rel_band"]] = wh.free_temp_c * self._wh_scale - self._wh_offset
        h[:, c["tank_next_full_rel_band"]] = ((wh.free_temp_c + wh.gain_c_per_kw * wh.p_max) * self._wh_scale
                                              - self._wh_offset)
        h[:, c["flex_baseline_kw/100"]] = f.flex.baseline_kw / 100.0
        h[:, c["flex_backlog_rel"]] = f.flex.backlog_kwh * self._backlog_scale
        lo, own, hi = f.action_ranges()
        for up, down, j, scale in self._range_cols:
            np.subtract(hi[j], own[j], out=h[:, up], casting="unsafe")
            h[:, up] /= scale
            np.subtract(own[j], lo[j], out=h[:, down], casting="unsafe")
            h[:, down] /= scale
        # the power change that zeroes the own-control net load, as a share of the device's range on that side
        for column, j in self._zero_net_cols:
            span = np.where(default_kw > 0.0, own[j] - lo[j], hi[j] - own[j])
            with np.errstate(divide="ignore", invalid="ignore"):
                zero_net = np.where(span > 1e-9, -default_kw / span, 0.0)
            h[:, column] = np.clip(zero_net, -1.0, 1.0)
        return h

    def build_globals(self) -> np.ndarray:
        """(G,) global features of the current step; (K, G) for a fleet with K clocks (one row per clock)."""
        f = self.fleet
        s = f.seconds
        tod = 2 * np.pi * (s % 86400) / 86400.0
        doy = 2 * np.pi * ((self._start_doy + s // 86400) % 365) / 365.0
        weekend = (((self._start_weekday + s // 86400) % 7) >= 5) * 1.0
        g = f.grid
        homes_per_clock = f.n // f.clocks
        return np.stack(np.broadcast_arrays(
            np.sin(tod), np.cos(tod), np.sin(doy), np.cos(doy), weekend,
            g[..., G["outdoor_temp_c"]] / 40.0, g[..., G["ghi_w_m2"]] / 1000.0, g[..., G["price_import"]] / 0.5,
            g[..., G["price_export"]] / 0.5, g[..., G["carbon_kg_per_kwh"]],
            f.clock_sums(f.net_kw) / homes_per_clock / 5.0), axis=-1).astype(np.float64)
