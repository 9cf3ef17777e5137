"""Composition root of the bridge: settings, logging, signals, health, run."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from mqtt_bridge.bridge import Bridge
from mqtt_bridge.errors import BridgeError
from mqtt_bridge.health import serve_health
from mqtt_bridge.settings import BridgeSettings


def main() -> int:
    settings = BridgeSettings()
    logging.basicConfig(
        level=settings.logging_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    bridge = Bridge(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: draining and stopping", signum)
        bridge.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.health_port:
        serve_health(
            settings.health_port, lambda: (bridge.stats.mqtt_connected, bridge.stats.as_dict())
        )
    try:
        bridge.run()
    except BridgeError as exc:
        logging.getLogger(__name__).error("bridge stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
