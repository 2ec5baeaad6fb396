"""Vectorized DER fleet environments.

Importing this package imports neither torch nor ray: the RLlib multi-agent env and the PettingZoo
view load on first access (``vpprl.envs.VppMultiAgentEnv``, ``vpprl.envs.VppParallelEnv``).
Registered Gymnasium ids: ``vpprl/PeakShaving-v0``, ``vpprl/PriceArbitrage-v0``,
``vpprl/DemandResponse-v0``, ``vpprl/FrequencyRegulation-v0``; each accepts ``num_homes=``,
``seed=`` and any ScenarioConfig field (e.g. ``dataset=<CityLearn dir>``, ``dt_s=``).
"""

from __future__ import annotations

import gymnasium as gym

from .devices import DEVICE_CLASSES
from .fleet import COST_NAMES, Fleet
from .fleet_builder import FleetLayout, build_citylearn_fleet, build_fleet
from .fleet_config import FleetConfig, Ownership
from .home_batch import VppHomeBatchEnv
from .scenario import CostWeights, ScenarioConfig, build_scenario
from .vpp_env import VppEnv, scenario_from_kwargs

ENV_IDS: dict[str, str] = {
    "vpprl/PeakShaving-v0": "peak_shaving",
    "vpprl/PriceArbitrage-v0": "price_arbitrage",
    "vpprl/DemandResponse-v0": "demand_response",
    "vpprl/FrequencyRegulation-v0": "frequency_regulation",
    "vpprl/MarketBid-v0": "market_bid",
}
for _env_id, _task in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point="vpprl.envs.vpp_env:VppEnv", kwargs={"task": _task},
                     disable_env_checker=True)

_LAZY = {"VppMultiAgentEnv": ".multi_agent", "VppParallelEnv": ".pettingzoo_env"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COST_NAMES",
    "DEVICE_CLASSES",
    "ENV_IDS",
    "CostWeights",
    "Fleet",
    "FleetConfig",
    "FleetLayout",
    "Ownership",
    "ScenarioConfig",
    "VppEnv",
    "VppHomeBatchEnv",
    "VppMultiAgentEnv",
    "VppParallelEnv",
    "build_citylearn_fleet",
    "build_fleet",
    "build_scenario",
    "scenario_from_kwargs",
]
