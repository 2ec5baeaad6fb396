"""Device simulators that speak the real protocols on loopback, backed by the env's device physics."""
