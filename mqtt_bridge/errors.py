"""Exceptions of the bridge (the contract's rejection, InvalidReading, is iot_common's)."""

from __future__ import annotations

from iot_common.errors import PlatformError


class BridgeError(PlatformError):
    """Root of everything the bridge raises on purpose."""


class KafkaDeliveryError(BridgeError):
    """Kafka refused a record for good; the bridge exits so MQTT redelivers."""
