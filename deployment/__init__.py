"""Safety shield and its training wrappers; command encoders, export and the dispatch loop come next."""

from .shield import Shield, ShieldConfig, ShieldResult
from .wrappers import ShieldWrapper

__all__ = ["Shield", "ShieldConfig", "ShieldResult", "ShieldWrapper"]
