"""Safety shield and its training wrappers, policy export (``export``, ``onnx_policy``), device protocols
(``protocols``), their loopback simulators (``simulators``, ``simulated_fleet``) and the dispatch loop
(``dispatch_loop``, ``dispatch_cli``). The protocol and loop modules are imported by name, not here, so that
training never loads them."""

from .faults import CommFaultWrapper, DeviceFaults, FaultConfig, TelemetryEstimator
from .shield import Shield, ShieldConfig, ShieldResult
from .wrappers import ShieldWrapper

__all__ = ["CommFaultWrapper", "DeviceFaults", "FaultConfig", "Shield", "ShieldConfig", "ShieldResult", "ShieldWrapper", "TelemetryEstimator"]
