"""Progress bars a person can read (tqdm): ETA, return and key KPIs on trainings, evaluations and benchmarks.

Shown on an interactive terminal only (``disable=None``: a log file or a CI log gets the plain log lines,
not carriage returns); ``VPPRL_PROGRESS=1`` forces them on, ``0`` off. Log records written while a bar
is up go above it (``logging_redirect_tqdm``), so the bar and the log lines never overwrite each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def _disable() -> bool | None:
    flag = os.environ.get("VPPRL_PROGRESS", "").strip()
    if flag in ("0", "false", "no"):
        return True
    if flag in ("1", "true", "yes"):
        return False
    return None  # tqdm: on for a terminal, off otherwise


def bar(total: float | None, desc: str, unit: str = "it", **kwargs: Any) -> tqdm:
    """A bar over ``total`` units (iterations, episodes, or seconds of a time budget)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=_disable(), dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def logs_above(progress: tqdm) -> Iterator[tqdm]:
    """Route logging through ``tqdm.write`` while ``progress`` is shown; close it at the end."""
    with progress, logging_redirect_tqdm():
        yield progress
