"""The one exception hierarchy of eventbus.

Every error says whether retrying the same operation can help (``retryable``), so a
failure policy can decide without knowing where the error came from::

    EventBusError
    ├── ConfigurationError            bad settings or arguments (not retryable)
    ├── EventError                    an event could not be built, encoded or decoded
    │   ├── SerializationError        encoding failed, or the value is too large (not retryable)
    │   ├── DecodeError               bytes are not a JSON envelope (not retryable)
    │   └── UnknownEventTypeError     no model registered for the type (not retryable)
    ├── BrokerError                   talking to Kafka failed
    │   ├── BrokerUnavailableError    the broker cannot be reached (retryable)
    │   ├── BrokerStartError          an embedded broker did not start (not retryable)
    │   ├── PublishError              the broker did not acknowledge a record (retryable)
    │   └── UnsupportedFeatureError   the broker or transport lacks a feature (not retryable)
    ├── HandlerError                  raised by handlers to steer the failure policy
    │   ├── RetryLater                please retry this message (retryable)
    │   └── DeadLetterNow             send this message to the dead-letter topic now
    └── LifecycleError                a client was used before start() or after stop()
"""

from __future__ import annotations


class EventBusError(Exception):
    """Base class of every error raised by eventbus."""

    retryable: bool = False


class ConfigurationError(EventBusError):
    """Settings or arguments are invalid; fix the configuration, do not retry."""


class EventError(EventBusError):
    """An event could not be built, encoded or decoded."""


class SerializationError(EventError):
    """An event could not be encoded for the wire (or is larger than allowed)."""


class DecodeError(EventError):
    """A record's value is not a decodable event envelope."""


class UnknownEventTypeError(EventError):
    """No payload model is registered for an event type and version."""


class BrokerError(EventBusError):
    """Talking to the Kafka broker failed."""


class BrokerUnavailableError(BrokerError):
    """The broker could not be reached within the configured timeout."""

    retryable = True


class BrokerStartError(BrokerError):
    """An embedded broker process did not start."""


class PublishError(BrokerError):
    """A record was not acknowledged by the broker.

    ``retryable_cause`` is True when the client said that sending again may succeed.
    """

    retryable = True
    retryable_cause = False


class UnsupportedFeatureError(BrokerError):
    """The broker or the transport does not support the requested feature."""


class HandlerError(EventBusError):
    """Raised by a handler to tell the failure policy what to do with a message."""


class RetryLater(HandlerError):  # noqa: N818 - the name is the instruction
    """The handler asks for the message to be retried under the retry policy."""

    retryable = True


class DeadLetterNow(HandlerError):  # noqa: N818 - the name is the instruction
    """The handler asks for the message to go to the dead-letter topic at once."""


class LifecycleError(EventBusError):
    """A client was used before ``start()`` or after ``stop()``."""
