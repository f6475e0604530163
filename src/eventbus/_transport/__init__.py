"""Transports: the only code that talks to a Kafka client library."""
