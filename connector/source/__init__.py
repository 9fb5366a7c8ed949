"""The Kafka side: the consumer adapter and decoding record values."""
