"""Per-agent action dicts (RLlib, PettingZoo) -> the fleet's (N, D) action, checked entry by entry.

Each agent must send exactly one value per device class: a scalar or a wrongly sized vector would be
broadcast or scrambled silently by numpy, so it is an error naming the agent and the expected shape.
Agents missing from the dict keep their devices' default (the zero action).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .devices import DEVICE_CLASSES
from .fleet import NUM_DEVICE_CLASSES


def stack_agent_actions(actions: dict[str, Any], index: dict[str, int], n: int) -> np.ndarray:
    """(n, D) float32 action from ``{agent_id: (D,) action}``; ``index`` maps agent ids to homes."""
    out = np.zeros((n, NUM_DEVICE_CLASSES), dtype=np.float32)
    for aid, a in actions.items():
        if aid not in index:
            raise ValueError(f"unknown agent {aid!r} in the action dict (agents are home_0 .. home_{n - 1})")
        a = np.asarray(a)
        if a.shape != (NUM_DEVICE_CLASSES,):
            raise ValueError(f"action of {aid!r} must have shape ({NUM_DEVICE_CLASSES},), one value per device "
                             f"class {DEVICE_CLASSES}, got shape {a.shape}")
        out[index[aid]] = a
    return out
