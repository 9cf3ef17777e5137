"""MQTT -> Kafka bridge: the gate where the reading contract (iot_common.contract)
decides what enters iot.readings and what becomes a dead letter."""
