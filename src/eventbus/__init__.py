"""eventbus: typed, safe Kafka events for business microservices.

The seeds' ``from shared.kafka import ...`` becomes ``from eventbus import ...`` (the
library) and ``from hrms.events import ...`` (the HR/ERP event catalog).
"""

from eventbus._codec import decode_event, encode_event, normalise
from eventbus._consumer import KafkaConsumer
from eventbus._deadletter import dead_letter_topic, retry_topic, topic_domain
from eventbus._dispatch import ConsumerStats, Middleware
from eventbus._envelope import BaseEvent, EventPayload, PersonalData, Priority, Redacted
from eventbus._features import Features
from eventbus._groups import group_name
from eventbus._handlers import MessageContext
from eventbus._policy import NO_RETRY, RetryPolicy
from eventbus._priority import PriorityLanes
from eventbus._producer import KafkaProducer, close_producer, get_producer
from eventbus._registry import EventRegistry, default_registry
from eventbus._retrytopics import RetryTopics
from eventbus._stall import StallDetector
from eventbus._topics import TopicSpec, ensure_topics
from eventbus._transport.base import Record, RecordMetadata, TopicPartition
from eventbus.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    DeadLetterNow,
    DecodeError,
    EventBusError,
    PublishError,
    RetryLater,
    SerializationError,
    UnknownEventTypeError,
)
from eventbus.settings import KafkaSettings

__all__ = [
    "NO_RETRY",
    "BaseEvent",
    "BrokerUnavailableError",
    "ConfigurationError",
    "ConsumerStats",
    "DeadLetterNow",
    "DecodeError",
    "EventBusError",
    "EventPayload",
    "EventRegistry",
    "Features",
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaSettings",
    "MessageContext",
    "Middleware",
    "PersonalData",
    "Priority",
    "PriorityLanes",
    "PublishError",
    "Record",
    "RecordMetadata",
    "Redacted",
    "RetryLater",
    "RetryPolicy",
    "RetryTopics",
    "SerializationError",
    "StallDetector",
    "TopicPartition",
    "TopicSpec",
    "UnknownEventTypeError",
    "close_producer",
    "dead_letter_topic",
    "decode_event",
    "default_registry",
    "encode_event",
    "ensure_topics",
    "get_producer",
    "group_name",
    "normalise",
    "retry_topic",
    "topic_domain",
]
