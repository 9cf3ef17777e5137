import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent

# CI must pass or fail for the code, not for the draw: there the property tests
# run the same examples every time (derandomized); at a desk they explore anew.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("dev", database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def original_sensors_json() -> bytes:
    return (ROOT / "iot_data_generator" / "sensors.json").read_bytes()
