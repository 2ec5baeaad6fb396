"""Start-up of the command-line apps: a user's mistake gets one clear line on stderr and exit code 2,
never a traceback. Only the start-up phase (config validation, data loading, checkpoint lookup) is
guarded: an error later, inside training or evaluation, is a bug and keeps its traceback."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError)


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn a user-input error raised inside the block into ``prog: error: ...`` and exit code 2."""
    try:
        yield
    except USER_ERRORS as err:
        fail(prog, str(err))


def fail(prog: str, message: str) -> None:
    """One line on stderr, exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_known_keys(cfg: Any, schema: type, prefix: str = "") -> None:
    """ValueError naming the first key of ``cfg`` (a DictConfig) that ``schema`` (a dataclass) does not have:
    Hydra's ``+key=value`` appends keys a structured config would otherwise keep silently."""
    from dataclasses import fields, is_dataclass
    from typing import get_type_hints

    from omegaconf import DictConfig

    hints = get_type_hints(schema)
    names = {f.name for f in fields(schema)}
    for key in cfg.keys():
        if key == "hydra":
            continue
        if key not in names:
            raise ValueError(f"unknown key {prefix}{key}; valid keys here: {sorted(names)}")
        value, kind = cfg[key], hints.get(key)
        kind = next((a for a in getattr(kind, "__args__", ()) if is_dataclass(a)), kind)
        if isinstance(value, DictConfig) and is_dataclass(kind):
            check_known_keys(value, kind, f"{prefix}{key}.")


def quiet_ray() -> None:
    """Silence the notices Ray and RLlib log on every run (new API stack default, token auth on a local
    instance, gputil, deprecations inside RLlib's own code): ray's loggers show errors only. Call after
    importing ray (its import configures its loggers)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray", "ray.rllib", "ray.tune", "ray.data", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\..*)?")
