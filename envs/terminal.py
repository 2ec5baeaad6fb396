"""End-of-episode accounting, so that a finite episode does not reward emptying storage.

Energy held in storage at the end of an episode has value the episode itself never sees: a policy
could drain batteries, leave EVs to charge after the horizon and let homes and tanks cool for
free. At truncation the env therefore adds the *terminal value*: the change of the fleet's stored
energy over the episode, in electricity-equivalent kWh, valued at the cheapest import price of the
episode (what replacing it would cost at best). Stored energy counts as
    battery:      eta_discharge * E
    EV:           - (energy still owed to plugged-in drivers) / eta
    water heater: heat capacity * T                     (resistance element: 1 kWh per kWh)
    home:         +- capacitance * T / COP_REF          (+ while heating, - while cooling)
It applies when the scenario prices energy (a price-arbitrage task); EVs that leave exactly at the
horizon have their unmet energy counted as at any other departure, for every task.
The env pays it as it accrues: every step adds the change of stored energy over that step at the same
price, the building's heat signed by *that step's* heat-pump mode (warming a home is stored value while
it heats and a loss while it cools, whatever the mode was when the episode began). Without a mode change
the sum telescopes to the end-minus-start value; either way the credit lands on the step that filled or
drained storage: a dense signal instead of one large, partly unpredictable reward at the last step.
"""

from __future__ import annotations

import numpy as np

from .fleet import Fleet

COP_REF = 3.0


def stored_energy_parts(fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """Per home (kWh): (batteries + EV energy owed + tank heat, building heat before the mode's sign)."""
    b, ev, wh, th = fleet.battery, fleet.ev, fleet.water_heater, fleet.thermostat
    stored = battery_stored_kwh(fleet)
    stored -= ev.energy_needed_kwh * ~ev.arrived / ev.params.efficiency  # not sessions starting right now
    stored += wh.owned * wh.heat_capacity_kwh_per_c * wh.temp_c
    building = th.owned * th.params.capacitance_kwh_per_c * th.temp_c.astype(np.float64) / COP_REF
    return stored, building


def battery_stored_kwh(fleet: Fleet) -> np.ndarray:
    """Per home (kWh): the batteries' part of the stored energy (what they can deliver)."""
    b = fleet.battery
    return b.energy_kwh.astype(np.float64) * b.params.discharge_efficiency


def stored_energy_kwh(fleet: Fleet, heating: np.ndarray) -> np.ndarray:
    """Electricity-equivalent stored energy per home (kWh); ``heating`` signs the building's heat."""
    other, building = stored_energy_parts(fleet)
    return other + np.where(heating, 1.0, -1.0) * building


def terminal_price(fleet: Fleet, steps: int, price_scale: float = 1.0) -> float | np.ndarray:
    """The cheapest import price ($/kWh) over the episode's steps ((K,) for a fleet with K clocks)."""
    stride = max(1, steps // 2000)
    from ..data.profiles import G

    cheapest = fleet.grid_at_steps(np.arange(0, steps, stride))[..., G["price_import"]].min(axis=0)
    return price_scale * float(cheapest) if fleet.clocks == 1 else price_scale * cheapest.astype(np.float64)


#: how the learner's shaping values stored energy at each step (``ScenarioConfig.storage_potential``)
STORAGE_POTENTIALS = ("terminal_price", "highest_price_ahead")


def storage_potential_prices(fleet: Fleet, steps: int, price_scale: float, potential: str) -> np.ndarray:
    """(steps + 1,) ((steps + 1, K) with K clocks) $/kWh at which the shaping values the batteries' stored energy before each step and at the end.

    ``terminal_price``: the terminal price throughout (the shaping pays exactly the terminal value's accrual).
    ``highest_price_ahead``: before step k, the highest import price of steps k..T-1; at the end, the
    terminal price. Potential-based shaping Phi_k = price_k * battery energy_k (heat and EV energy keep the
    terminal price: heat leaks away within hours, so valuing it at a later peak's price would pay for storing
    what will be lost): the rewards then sum to the scored return plus battery energy_0 * (terminal price -
    price_0), a constant of the start, so the optimal policy is unchanged; but energy stored before a price peak
    is credited when it is stored (at the peak's price), not ~10 h later when it is used, and energy still held
    after the peak loses value step by step."""
    end = terminal_price(fleet, steps, price_scale)
    if potential == "terminal_price":
        return np.broadcast_to(end, (steps + 1,) + np.shape(end)).astype(np.float64)
    if potential != "highest_price_ahead":
        raise ValueError(f"storage_potential must be one of {list(STORAGE_POTENTIALS)}, got {potential!r}")
    from ..data.profiles import G

    prices = price_scale * fleet.grid_at_steps(np.arange(steps))[..., G["price_import"]].astype(np.float64)
    ahead = np.maximum.accumulate(prices[::-1], axis=0)[::-1]
    return np.concatenate([ahead, np.reshape(end, (1,) + np.shape(end))])
