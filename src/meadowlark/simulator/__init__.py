"""Simulated LwM2M clients for tests, benchmarks and demos (``meadowlark simulate``)."""

from meadowlark.simulator.client import (
    DeviceState,
    DeviceStats,
    DeviceTiming,
    RegistrationError,
    SimulatedDevice,
)
from meadowlark.simulator.fleet import Fleet, FleetConfig
from meadowlark.simulator.objects import DeviceIdentity, DeviceObjects, Effect, OperationError

__all__ = [
    "DeviceIdentity",
    "DeviceObjects",
    "DeviceState",
    "DeviceStats",
    "DeviceTiming",
    "Effect",
    "Fleet",
    "FleetConfig",
    "OperationError",
    "RegistrationError",
    "SimulatedDevice",
]
