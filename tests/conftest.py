from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def original_sensors_json() -> bytes:
    return (ROOT / "iot_data_generator" / "sensors.json").read_bytes()
