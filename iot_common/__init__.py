"""What every service of the platform shares, and nothing else: the reading
contract, the topic names, the settings common to several services, Kafka
helpers, the exception root and the crash points of our protocols.

The service packages (iot_data_generator, mqtt_bridge, stream_jobs) depend on
this one and never on each other; this one depends on none of them."""
