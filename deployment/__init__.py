"""Safety shield and its training wrappers; command encoders, export and the dispatch loop come next."""

from .faults import CommFaultWrapper, DeviceFaults, FaultConfig, TelemetryEstimator
from .shield import Shield, ShieldConfig, ShieldResult
from .wrappers import ShieldWrapper

__all__ = ["CommFaultWrapper", "DeviceFaults", "FaultConfig", "Shield", "ShieldConfig", "ShieldResult", "ShieldWrapper", "TelemetryEstimator"]
