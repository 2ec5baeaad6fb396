"""Device physics as structs of arrays over the whole fleet (one object per device class)."""

from .base import Device, StorageDevice, ThermalDevice, inverse_map_action, map_action
from .battery import Battery, BatteryCurves, BatteryParams
from .ev_charger import EvCharger, EvChargerParams
from .flex_load import FlexLoad, FlexLoadParams
from .solar import Solar
from .thermostat import Thermostat, ThermostatParams, cop_cooling, cop_heating
from .water_heater import WaterHeater, WaterHeaterParams

DEVICE_CLASSES: tuple[str, ...] = ("battery", "ev", "pv", "water_heater", "thermostat", "flex_load")

__all__ = [
    "DEVICE_CLASSES",
    "Battery",
    "BatteryCurves",
    "BatteryParams",
    "Device",
    "EvCharger",
    "EvChargerParams",
    "FlexLoad",
    "FlexLoadParams",
    "Solar",
    "StorageDevice",
    "ThermalDevice",
    "Thermostat",
    "ThermostatParams",
    "WaterHeater",
    "WaterHeaterParams",
    "cop_cooling",
    "cop_heating",
    "inverse_map_action",
    "map_action",
]
