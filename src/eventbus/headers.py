"""Kafka header names that mirror the envelope, so consumers can route without decoding.

All values are UTF-8 bytes. These names are part of the wire contract.
"""

from __future__ import annotations

EVENT_TYPE = "event_type"
EVENT_ID = "event_id"
EVENT_VERSION = "event_version"
CORRELATION_ID = "correlation_id"
CAUSATION_ID = "causation_id"
TENANT_ID = "tenant_id"
PRIORITY = "priority"
SOURCE_SERVICE = "source_service"
CONTENT_TYPE = "content-type"
JSON = "application/json"

# W3C trace context (see eventbus.tracing), carried from the writer to every consumer
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Dead-letter records (see eventbus.deadletter)
DLQ_ORIGINAL_TOPIC = "dlq.original_topic"
DLQ_ORIGINAL_PARTITION = "dlq.original_partition"
DLQ_ORIGINAL_OFFSET = "dlq.original_offset"
DLQ_ORIGINAL_KEY = "dlq.original_key"
DLQ_EXCEPTION_TYPE = "dlq.exception_type"
DLQ_EXCEPTION_MESSAGE = "dlq.exception_message"
DLQ_TRACEBACK_DIGEST = "dlq.traceback_digest"
DLQ_REASON = "dlq.reason"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_FIRST_FAILURE_AT = "dlq.first_failure_at"
DLQ_FAILED_AT = "dlq.failed_at"
DLQ_CONSUMER_GROUP = "dlq.consumer_group"

# Retry tiers (see eventbus.RetryTopics)
RETRY_TIER = "retry.tier"
RETRY_DUE_AT = "retry.due_at"
RETRY_ORIGINAL_TOPIC = "retry.original_topic"

__all__ = [name for name in dir() if name.isupper()]
