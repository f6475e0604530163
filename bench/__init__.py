"""Benchmarks of eventbus against raw aiokafka, raw confluent-kafka and FastStream.

Run ``uv run python -m bench --help``; see ``bench/README.md`` for what each scenario
measures and how to read the output.
"""
