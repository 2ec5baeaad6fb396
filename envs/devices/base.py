"""What every device class shares: the action mapping and the shield-facing interface.

Convention: every power is AC power drawn from the home's meter in kW (positive = consume,
negative = inject). Actions are *default-relative* in [-1, 1]: 0 is what the device does on
its own (thermostat holds setpoint, EV charges on arrival, battery idles, PV is not curtailed),
+1 its highest feasible consumption, -1 its lowest. This matches CTA-2045 shed (-) / load-up (+).
"""

from __future__ import annotations

import numpy as np


def map_action(a: np.ndarray, p_lo: np.ndarray, p_def: np.ndarray, p_hi: np.ndarray) -> np.ndarray:
    """Piecewise-linear map of a in [-1, 1] onto [p_lo, p_def] (a <= 0) and [p_def, p_hi] (a >= 0)."""
    return p_def + a * np.where(a >= 0.0, p_hi - p_def, p_def - p_lo)


def inverse_map_action(p: np.ndarray, p_lo: np.ndarray, p_def: np.ndarray, p_hi: np.ndarray) -> np.ndarray:
    """The action that :func:`map_action` maps to power ``p`` (0 where the range is empty)."""
    up = p_hi - p_def
    down = p_def - p_lo
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p >= p_def, np.where(up > 1e-12, (p - p_def) / up, 0.0),
                     np.where(down > 1e-12, (p - p_def) / down, 0.0))
    return np.clip(a, -1.0, 1.0)
