"""Composition root of the bridge: settings, logging, signals, health, run."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from iot_common.logs import configure as configure_logging
from iot_common.metrics import CountersCollector, service_registry
from mqtt_bridge.bridge import Bridge
from mqtt_bridge.errors import BridgeError
from mqtt_bridge.health import serve_health
from mqtt_bridge.settings import BridgeSettings


def main() -> int:
    settings = BridgeSettings.load()
    configure_logging(settings.logging_level, settings.log_format)
    bridge = Bridge(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: draining and stopping", signum)
        bridge.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.health_port:
        metrics = service_registry(
            CountersCollector("iot_bridge", lambda: [({}, bridge.stats)]),
        )
        serve_health(
            settings.health_port,
            lambda: (bridge.stats.mqtt_connected, bridge.stats.as_dict()),
            metrics,
            host=settings.health_host,
        )
    try:
        bridge.run()
    except BridgeError as exc:
        logging.getLogger(__name__).error("bridge stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
