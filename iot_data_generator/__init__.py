"""Simulated sensors publishing readings over MQTT, in the original challenge's format."""
