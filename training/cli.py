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

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, KeyError)


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn a user-input error raised inside the block into ``prog: error: ...`` and exit code 2."""
    try:
        yield
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def quiet_ray() -> None:
    """Silence the notices Ray and RLlib log on every run (new API stack default, token auth on a local
    instance, gputil, deprecations inside RLlib's own code): ray's loggers show errors only. Call after
    importing ray (its import configures its loggers)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray", "ray.rllib", "ray.tune", "ray.data", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\..*)?")
