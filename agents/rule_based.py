"""Rule-based baselines: the controllers a utility runs today, one rule per device class and task.

* Battery: TOU schedule - charge from solar surplus, charge at cheap prices, discharge to cover the
  home's own load at peak prices (never into the backup reserve, never exporting).
* EV: charge on arrival (``ev_rule="on_arrival"``) or in the cheapest hours before departure,
  charging anyway once the remaining time only just suffices (``"cheapest"``).
* Thermostat: setback during peaks, pre-heat / pre-cool in the hours before a peak.
* Water heater: load-up before a peak, shed during it (still heating if the tank would get too cold).
* C&I flexible load: curtail during peaks and events, rebound after.
* Demand response: every device sheds during events and pre-conditions before them.
* Frequency regulation: batteries respond in proportion to the signal (droop), shared by rated power.
Which signal drives the rules follows the tasks: with a price task, peaks and cheap hours come from the
public tariff over the next day (price quantiles); with peak shaving, from the aggregate approaching the
feeder limit: the headroom under the limit this step goes first to EVs that must charge, then to
other charging in proportion to its request, and a negative headroom is covered by battery discharge
(down to the reserve), thermostat setback and water-heater shed; with demand response, from the events.
Every home keeps within its service import limit: charging is trimmed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..envs.fleet import BATTERY, EV, FLEX, THERMOSTAT, WATER_HEATER
from ..envs.tasks import DemandResponse, FrequencyRegulation, MarketBid, PeakShaving, PriceArbitrage
from ..envs.tasks.base import check_ranges
from ..envs.vpp_env import VppEnv
from .policy import SetpointPolicy


@dataclass
class RuleConfig:
    """Knobs of the rule-based controller (hours, quantiles, degC)."""

    ev_rule: str = "cheapest"  # or "on_arrival"
    precondition_h: float = 2.0
    peak_quantile: float = 0.75
    cheap_quantile: float = 0.25
    band_margin_c: float = 0.3
    tank_loadup_below_high_c: float = 2.0
    tank_shed_floor_above_low_c: float = 1.0
    feeder_trigger_fraction: float = 0.95
    feeder_valley_fraction: float = 0.75

    def __post_init__(self) -> None:
        if self.ev_rule not in ("cheapest", "on_arrival"):
            raise ValueError(f"RuleConfig.ev_rule must be 'cheapest' or 'on_arrival', got {self.ev_rule!r}")
        if not 0.0 <= self.cheap_quantile <= self.peak_quantile <= 1.0:
            raise ValueError("RuleConfig: need 0 <= cheap_quantile <= peak_quantile <= 1, got "
                             f"{self.cheap_quantile}, {self.peak_quantile}")
        check_ranges("RuleConfig", precondition_h=(self.precondition_h, 0.0, 24.0),
                     band_margin_c=(self.band_margin_c, 0.0, 5.0),
                     tank_loadup_below_high_c=(self.tank_loadup_below_high_c, 0.0, 30.0),
                     tank_shed_floor_above_low_c=(self.tank_shed_floor_above_low_c, 0.0, 30.0),
                     feeder_trigger_fraction=(self.feeder_trigger_fraction, 0.0, 1.0),
                     feeder_valley_fraction=(self.feeder_valley_fraction, 0.0, 1.0))


class RuleBased(SetpointPolicy):
    """All rules above, chosen by the tasks the environment carries."""

    name = "rule_based"

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = config or RuleConfig()

    def reset(self, env: VppEnv) -> None:
        super().reset(env)
        self.dr = next((t for t in env.tasks if isinstance(t, DemandResponse)), None)
        self.fr = next((t for t in env.tasks if isinstance(t, FrequencyRegulation)), None)
        self.bid = next((t for t in env.tasks if isinstance(t, MarketBid)), None)
        self.peak = next((t for t in env.tasks if isinstance(t, PeakShaving)), None)
        self.price_task = any(isinstance(t, PriceArbitrage) for t in env.tasks)
        f = env.fleet
        self._day_steps = max(1, 86400 // f.dt_s)
        self._pre_steps = max(1, int(round(self.config.precondition_h * 3600 / f.dt_s)))

    # ----- signals ----------------------------------------------------------------------------
    def _price_state(self) -> tuple[bool, bool, bool]:
        """(peak now, cheap now, a peak starts within the pre-conditioning window)."""
        f = self.env.fleet
        stride = max(1, self._day_steps // 96)  # sample the next day at <= 96 points
        prices = f.price_outlook(np.arange(0, self._day_steps, stride))
        hi = np.quantile(prices, self.config.peak_quantile)
        lo = np.quantile(prices, self.config.cheap_quantile)
        p_min, p_max = prices.min(), prices.max()
        flat = p_max - p_min < 1e-9
        # a peak is above the day's cheapest price and a cheap hour below its dearest: on a two-level tariff
        # with a short peak the quantile equals the off-peak price, which is not a peak
        peak = lambda p: (p >= hi) & (p > p_min + 1e-9)  # noqa: E731
        now = prices[0]
        peak_now = (not flat) and bool(peak(now))
        cheap_now = (not flat) and bool((now <= lo) & (now < p_max - 1e-9))
        ahead = prices[1: 1 + max(1, self._pre_steps // stride)]
        pre_peak = (not flat) and not peak_now and bool(np.any(peak(ahead)))
        return peak_now, cheap_now, pre_peak

    def _events(self) -> tuple[bool, bool]:
        """(DR event or market commitment now, one within the pre-conditioning window)."""
        now = soon = False
        if self.dr is not None:
            t = min(self.dr.t, self.dr.episode_steps)
            now, soon = bool(self.dr.active[t]), bool(self.dr.hours_to_event[t] <= self.config.precondition_h)
        if self.bid is not None:  # a committed hour is shed like an event
            t = min(self.bid.t, self.bid.episode_steps - 1)
            now |= bool(self.bid.commit_kw[t] > 0)
            soon |= bool(self.bid.hours_to_commitment[min(self.bid.t, self.bid.episode_steps)]
                         <= self.config.precondition_h)
        return now, soon

    # ----- setpoints --------------------------------------------------------------------------
    def setpoints(self) -> np.ndarray:
        f = self.env.fleet
        c = self.config
        lo, de, hi = f.action_ranges()
        sp = de.copy()
        peak_now, cheap_now, pre_peak = self._price_state() if self.price_task else (False, False, False)
        event_now, event_soon = self._events()
        headroom = None
        if self.peak is not None:
            # feeder headroom this step with batteries idle and only deadline-bound EVs charging
            must = self._ev_must_charge()
            committed = f.default_net_kw - de[BATTERY] - de[EV] + np.where(must, de[EV], 0.0)
            headroom = c.feeder_trigger_fraction * self.peak.limit_kw - float(committed.sum())
            peak_now = peak_now or headroom < 0
        shed = peak_now or event_now
        precondition = (pre_peak or (event_soon and not event_now)) and not shed

        # battery: TOU + self-consumption, within the backup reserve
        b = f.battery
        p_min, p_max = b.feasible_power_with_floor(b.reserve_kwh)
        home_net = f.default_net_kw - de[BATTERY]
        surplus = np.maximum(-home_net, 0.0)
        if headroom is not None:
            return self._within_site_limit(self._share_headroom(sp, lo, de, headroom, p_min, p_max, peak_now), lo)
        if self.fr is not None:  # the batteries hold the fleet at its declared point plus the signal
            share = b.params.max_charge_kw / max(float(b.params.max_charge_kw.sum()), 1e-9)
            fleet_target = (float(self.fr.declared_kw.sum()) + self.fr.signal[min(self.fr.t, self.fr.episode_steps)]
                            * self.fr.capacity_kw - float(home_net.sum()))
            sp[BATTERY] = np.clip(fleet_target * share, p_min, p_max)
        elif shed:
            sp[BATTERY] = np.maximum(-np.maximum(home_net, 0.0), p_min)
        elif cheap_now:
            sp[BATTERY] = p_max
        else:
            sp[BATTERY] = np.minimum(surplus, p_max)

        # EV: on arrival (default) or cheapest hours before departure
        if c.ev_rule == "cheapest" and self.fr is None:
            sp[EV] = np.where(self._ev_must_charge() | (cheap_now and not shed), de[EV], 0.0)

        # thermostat: setback at peaks, pre-condition before them
        th = f.thermostat
        if shed or precondition:
            lo_band, hi_band = th.params.comfort_low_c + c.band_margin_c, th.params.comfort_high_c - c.band_margin_c
            saving_edge = np.where(th.heating, lo_band, hi_band)
            comfort_edge = np.where(th.heating, hi_band, lo_band)
            target = saving_edge if shed else comfort_edge
            sp[THERMOSTAT] = np.clip(th.power_for_temperature(target), lo[THERMOSTAT], hi[THERMOSTAT])

        # water heater: shed at peaks (unless the tank would get too cold), load up before them
        wh = f.water_heater
        if shed:
            floor = wh.params.comfort_low_c + c.tank_shed_floor_above_low_c
            sp[WATER_HEATER] = np.clip(wh.power_for_temperature(floor), lo[WATER_HEATER], hi[WATER_HEATER])
        elif precondition:
            top = wh.params.comfort_high_c - c.tank_loadup_below_high_c
            sp[WATER_HEATER] = np.clip(wh.power_for_temperature(top), lo[WATER_HEATER], hi[WATER_HEATER])

        # C&I flexible load: curtail during peaks and events
        if shed:
            sp[FLEX] = lo[FLEX]
        return self._within_site_limit(sp, lo)

    def _ev_must_charge(self) -> np.ndarray:
        """EVs whose remaining time only just suffices at full power (with one step of margin)."""
        f = self.env.fleet
        ev = f.ev
        hours_needed = ev.energy_needed_kwh / np.maximum(ev.params.max_charge_kw * ev.params.efficiency, 1e-9)
        return (hours_needed >= ev.hours_to_departure - f.dt_h - 0.25) & (ev.energy_needed_kwh > 0)

    def _share_headroom(self, sp: np.ndarray, lo: np.ndarray, de: np.ndarray, headroom: float, p_min: np.ndarray,
                        p_max: np.ndarray, shed: bool) -> np.ndarray:
        """Peak shaving: give positive headroom to EV then battery charging, cover a deficit with
        battery discharge, setback and shed."""
        must = self._ev_must_charge()
        ev_request = np.where(must, 0.0, de[EV])
        sp[EV] = np.where(must, de[EV], 0.0)
        sp[BATTERY] = 0.0
        if headroom > 0:
            for j, request in ((EV, ev_request), (BATTERY, np.maximum(p_max, 0.0))):
                total = float(request.sum())
                share = min(1.0, headroom / total) if total > 0 else 0.0
                sp[j] += share * request
                headroom -= share * total
        else:
            available = -np.minimum(p_min, 0.0)
            total = float(available.sum())
            share = min(1.0, -headroom / total) if total > 0 else 0.0
            sp[BATTERY] = -share * available
        if shed:
            f = self.env.fleet
            th, wh, c = f.thermostat, f.water_heater, self.config
            edge = np.where(th.heating, th.params.comfort_low_c + c.band_margin_c, th.params.comfort_high_c - c.band_margin_c)
            sp[THERMOSTAT] = np.clip(th.power_for_temperature(edge), lo[THERMOSTAT], de[THERMOSTAT])
            floor = wh.params.comfort_low_c + c.tank_shed_floor_above_low_c
            sp[WATER_HEATER] = np.clip(wh.power_for_temperature(floor), lo[WATER_HEATER], de[WATER_HEATER])
            sp[FLEX] = lo[FLEX]
        return sp

    def _within_site_limit(self, sp: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Trim battery, then EV charging where a home would exceed its service import limit."""
        f = self.env.fleet
        excess = f.base_load_kw + sp.sum(axis=0) - f.layout.site_import_limit_kw
        for j in (BATTERY, EV):
            cut = np.clip(excess, 0.0, np.maximum(sp[j] - np.maximum(lo[j], 0.0), 0.0))
            sp[j] -= cut
            excess -= cut
        return sp


class ChargeOnArrival(RuleBased):
    """The rule set with uncontrolled EV charging (charge on arrival)."""

    name = "rule_based_ev_on_arrival"

    def __init__(self, config: RuleConfig | None = None) -> None:
        super().__init__(config or RuleConfig(ev_rule="on_arrival"))
