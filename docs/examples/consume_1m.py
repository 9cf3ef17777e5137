"""Read the 1-minute figures from Kafka as a downstream team would (docs/consumers.md).

    python docs/examples/consume_1m.py --bootstrap 127.0.0.1:9092 --from-beginning

Consumes `iot.readings.1m` with its own consumer group, checks every message
against the topic's data contract (JSON Schema, iot_common/contracts), keeps
per (sensor_id, window_start) the newest revision (the topic is at least once
and a window is re-emitted when late readings correct it), and prints one JSON
line per window whose figures changed. Stops after --idle seconds without a
message (0: never). Needs confluent-kafka and jsonschema.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer
from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parents[2] / "iot_common/contracts/iot.readings.1m.v1.json"


def newer(old: dict | None, new: dict) -> bool:
    """The revision rule: a higher revision wins; among equal ones the later emission."""
    if old is None:
        return True
    return (new["revision"], new["emitted_at"]) > (old["revision"], old["emitted_at"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="iot.readings.1m")
    ap.add_argument("--group", default="example-1m-reader")
    ap.add_argument(
        "--from-beginning", action="store_true", help="a new group starts at the oldest"
    )
    ap.add_argument("--idle", type=float, default=0, help="stop after this many quiet seconds")
    args = ap.parse_args()

    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": True,  # at least once is enough for a dashboard
        }
    )
    consumer.subscribe([args.topic])
    latest: dict[tuple[str, str], dict] = {}
    last_message = time.monotonic()
    try:
        while not args.idle or time.monotonic() - last_message < args.idle:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"kafka: {msg.error()}", file=sys.stderr)
                continue
            last_message = time.monotonic()
            try:
                doc = json.loads(msg.value())
            except ValueError:
                print(f"not JSON at offset {msg.offset()}: skipped", file=sys.stderr)
                continue
            errors = [e.message for e in validator.iter_errors(doc)]
            if errors:
                print(f"breaks the contract at offset {msg.offset()}: {errors}", file=sys.stderr)
                continue
            key = (doc["sensor_id"], doc["window_start"])
            if newer(latest.get(key), doc):
                latest[key] = doc
                print(json.dumps(doc), flush=True)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
