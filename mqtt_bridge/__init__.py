"""MQTT -> Kafka bridge. The reading contract (parse_reading) lives here: the bridge is the gate."""

from mqtt_bridge.contract import Reading, SensorSpec, parse_dt, parse_reading, parse_sensors
from mqtt_bridge.errors import BridgeError, InvalidReading

__all__ = [
    "BridgeError",
    "InvalidReading",
    "Reading",
    "SensorSpec",
    "parse_dt",
    "parse_reading",
    "parse_sensors",
]
