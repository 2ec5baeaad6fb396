"""Grid services (tasks); they compose: a scenario's reward is the sum of its tasks' rewards."""

from .base import Task, split_by_weight
from .demand_response import DemandResponse
from .frequency_regulation import FrequencyRegulation, score_series
from .market_bid import MarketBid
from .peak_shaving import PeakShaving
from .price_arbitrage import PriceArbitrage

TASKS: dict[str, type[Task]] = {
    "price_arbitrage": PriceArbitrage,
    "peak_shaving": PeakShaving,
    "demand_response": DemandResponse,
    "frequency_regulation": FrequencyRegulation,
    "market_bid": MarketBid,
}


def make_task(name: str, **params) -> Task:
    """Instantiate a task by name with its parameters (validated by the task)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**params)


__all__ = ["TASKS", "DemandResponse", "FrequencyRegulation", "MarketBid", "PeakShaving", "PriceArbitrage", "Task",
           "make_task", "score_series", "split_by_weight"]
