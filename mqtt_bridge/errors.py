"""Exceptions of the bridge; InvalidReading is also the contract's rejection."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of everything the bridge raises on purpose."""


class InvalidReading(BridgeError):
    """A payload that breaks the reading contract; `code` is stable, `detail` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


class KafkaDeliveryError(BridgeError):
    """Kafka refused a record for good; the bridge exits so MQTT redelivers."""
