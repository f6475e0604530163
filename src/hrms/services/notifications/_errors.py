"""Why a notification could not be sent: for now (transient) or for good (permanent)."""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification was not sent."""


class TransientDeliveryError(DeliveryError):
    """Sending may succeed later: the SMTP server is unreachable or answered 4xx."""


class CircuitOpenError(TransientDeliveryError):
    """The SMTP circuit breaker is open: the server was not even tried."""


class PermanentDeliveryError(DeliveryError):
    """Sending this event can never succeed: 5xx, unknown template, invalid address."""
