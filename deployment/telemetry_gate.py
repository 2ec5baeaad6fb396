"""Which telemetry the dispatcher may trust: fresh, in range, and physically reachable from the last reading.

Readings land in a ``TelemetryStore`` as they arrive (one row per device slot); each cycle the gate checks
them all at once. A reading is refused (the device's state left to the twin's own prediction, the device
released to its local control) when it is missing, stale or stamped in the future, not finite, outside the
device's rated limits, or when its state moved further since the last trusted reading than the device could
move it (a battery's rated power; a tank's element heating it; draws may cool a tank as fast as water runs;
an EV that left or arrived in between is another car):
what a spoofed or corrupted meter looks like. Authentication is the protocol link's job (TLS, client
certificates, signed OpenADR payloads, the Modbus allow list); this gate checks what an authenticated
device says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .commands import Telemetry

STATE_KEYS = ("", "soc_kwh", "temp_c")  # codes of DeviceLimits.state_key / TelemetryStore.state_code
REASONS = ("", "no telemetry", "stale", "stamped in the future", "power not finite or out of range",
           "state missing", "state not finite or out of range", "state moved faster than the device can",
           "connected flag not 0 or 1")


@dataclass(frozen=True)
class DeviceLimits:
    """Rated limits of one device, from the fleet's registry (kW, kWh, degC)."""

    min_kw: float
    max_kw: float
    state_key: str = ""  # "soc_kwh" or "temp_c": the state the twin takes from telemetry ("" none)
    state_lo: float = -math.inf
    state_hi: float = math.inf
    max_state_rise_per_h: float = math.inf
    max_state_fall_per_h: float = math.inf
    state_tolerance: float | None = None  # absolute (kWh or degC); None: GateConfig.state_tolerance x the span
    reports_connection: bool = False  # an EV charger: readings carry ``connected`` (0 or 1), a new car may jump


@dataclass(frozen=True)
class GateConfig:
    max_age_s: float = 120.0  # older readings are stale
    max_future_s: float = 5.0  # clock skew allowed for a reading stamped ahead of the dispatcher
    power_tolerance: float = 0.05  # fraction of the rated span, plus 0.05 kW
    state_tolerance: float = 0.05  # fraction of the state span (at least 0.5 degC for temperatures)

    def __post_init__(self) -> None:
        for name, lo, hi in (("max_age_s", 1.0, 86400.0), ("max_future_s", 0.0, 600.0),
                             ("power_tolerance", 0.0, 1.0), ("state_tolerance", 0.0, 1.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"GateConfig.{name} = {value} is outside the allowed range [{lo}, {hi}]")


class TelemetryStore:
    """The latest reading of every device slot, as arrays (M,); ``update`` as each message arrives."""

    def __init__(self, device_ids: list[str], state_keys: list[str]) -> None:
        m = len(device_ids)
        self.index = {d: i for i, d in enumerate(device_ids)}
        self.state_key = state_keys
        self.measured_at = np.full(m, np.nan)
        self.power_kw = np.full(m, np.nan)
        self.state = np.full(m, np.nan)
        self.connected = np.ones(m)
        self.energy_kwh = np.full(m, np.nan)  # a cumulative energy register where the device has one (CTA-2045)
        self.fresh = np.zeros(m, bool)  # a reading arrived since the last cycle

    def update(self, reading: Telemetry) -> None:
        """Take a reading; ``ValueError`` (nothing taken) for one whose values are not numbers."""
        i = self.index[reading.device_id]
        key = self.state_key[i]
        try:
            values = (float(reading.measured_at), float(reading.power_kw),
                      float(reading.state.get(key, np.nan)) if key else 0.0,
                      float(reading.state.get("connected", 1.0)), float(reading.state.get("energy_used_kwh", np.nan)))
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"reading of {reading.device_id} is not numeric: {err}") from None
        self.measured_at[i], self.power_kw[i], self.state[i], self.connected[i], self.energy_kwh[i] = values
        self.fresh[i] = True

    def start_cycle(self) -> None:
        self.fresh[:] = False


class TelemetryGate:
    """Checks every slot's reading at once and remembers the last trusted state for the rate check."""

    def __init__(self, limits: list[DeviceLimits], config: GateConfig | None = None) -> None:
        self.config = c = config or GateConfig()
        self.min_kw = np.array([x.min_kw for x in limits])
        self.max_kw = np.array([x.max_kw for x in limits])
        self.has_state = np.array([bool(x.state_key) for x in limits])
        self.state_lo = np.array([x.state_lo for x in limits])
        self.state_hi = np.array([x.state_hi for x in limits])
        self.rise = np.array([x.max_state_rise_per_h for x in limits])
        self.fall = np.array([x.max_state_fall_per_h for x in limits])
        span = self.state_hi - self.state_lo
        tol = np.where(np.isfinite(span), c.state_tolerance * span, 0.5)
        is_temp = np.array([x.state_key == "temp_c" for x in limits])
        self.state_tol = np.where(is_temp, np.maximum(tol, 0.5), tol)
        explicit = np.array([np.nan if x.state_tolerance is None else x.state_tolerance for x in limits])
        self.state_tol = np.where(np.isnan(explicit), self.state_tol, explicit)
        self.session = np.array([x.reports_connection for x in limits])
        self.power_tol = c.power_tolerance * (self.max_kw - self.min_kw) + 0.05
        self.last_state = np.full(len(limits), np.nan)
        self.last_at = np.full(len(limits), np.nan)
        self.last_connected = np.ones(len(limits), bool)

    def check(self, store: TelemetryStore, now: float) -> np.ndarray:
        """(M,) reason codes into ``REASONS`` (0 = trusted) for this cycle's readings; remembers the trusted."""
        c = self.config
        reason = np.zeros(len(self.min_kw), np.int8)

        def flag(mask: np.ndarray, code: int) -> None:
            reason[(reason == 0) & mask] = code

        age = now - store.measured_at
        flag(~store.fresh | ~np.isfinite(store.measured_at), 1)
        flag(age > c.max_age_s, 2)
        flag(age < -c.max_future_s, 3)
        p = store.power_kw
        flag(~np.isfinite(p) | (p < self.min_kw - self.power_tol) | (p > self.max_kw + self.power_tol), 4)
        s = store.state
        flag(self.has_state & np.isnan(s), 5)
        flag(self.has_state & (~np.isfinite(s) | (s < self.state_lo - self.state_tol)
                               | (s > self.state_hi + self.state_tol)), 6)
        with np.errstate(invalid="ignore"):
            hours = np.maximum(store.measured_at - self.last_at, 0.0) / 3600.0
            change = s - self.last_state
            reach = np.where(change > 0, self.rise, self.fall) * hours + self.state_tol
            # an EV that left or arrived in between is another car: its energy may jump (chargers only)
            same = ~self.session | ((store.connected == 1.0) & self.last_connected)
            moved_too_far = self.has_state & same & np.isfinite(change) & (np.abs(change) > reach)
        flag(moved_too_far, 7)
        flag(self.session & (store.connected != 0.0) & (store.connected != 1.0), 8)
        ok = reason == 0
        self.last_state[ok] = s[ok]
        self.last_at[ok] = store.measured_at[ok]
        self.last_connected[ok] = store.connected[ok] == 1.0
        return reason
