"""Stream jobs: archive Kafka topics as Parquet in the lake (later: 1-minute means)."""
