import pytest

from tests.integration.harness import Pipeline, start_brokers


@pytest.fixture(scope="session")
def brokers(tmp_path_factory):
    """One Mosquitto and one Kafka for the session (tests isolate by topic names)."""
    stack, mosquitto, kafka = start_brokers(tmp_path_factory.mktemp("brokers"))
    yield stack
    kafka.stop()
    mosquitto.stop()


@pytest.fixture
def pipeline(brokers, tmp_path):
    p = Pipeline(brokers, tmp_path).start()
    yield p
    p.stop()
