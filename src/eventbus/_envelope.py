"""The event envelope: :class:`BaseEvent`, its payload base and the priority scale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Priority(StrEnum):
    """How urgent an event is; seed 004's scale plus seed 000's ``normal``."""

    LOW = "low"
    NORMAL = "normal"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Ordering weight: higher is more urgent."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {
    Priority.LOW: 0,
    Priority.NORMAL: 1,
    Priority.MEDIUM: 2,
    Priority.HIGH: 3,
    Priority.CRITICAL: 4,
}


class PersonalData:
    """Marks a payload field as personal data of a data subject.

    Used with :data:`typing.Annotated`::

        recipient_email: Annotated[str, PersonalData(subject="user_id")]

    ``subject`` names the payload field that identifies whose data it is. The marker is
    metadata only today; field-level encryption reads it.
    """

    __slots__ = ("subject",)

    def __init__(self, subject: str | None = None) -> None:
        self.subject = subject

    def __repr__(self) -> str:
        return f"PersonalData(subject={self.subject!r})"


class Redacted(BaseModel):
    """Stands in for a personal field whose value a reader may not (or can no longer) see."""

    model_config = ConfigDict(frozen=True)

    redacted: bool = True
    reason: str = "redacted"


class EventPayload(BaseModel):
    """Base class for typed event payloads (the envelope's ``data``).

    Attributes:
        aggregate_key: name of the field whose value is the default Kafka key, so that
            one entity's events stay in order on one partition.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    aggregate_key: ClassVar[str | None] = None

    @classmethod
    def personal_fields(cls) -> dict[str, PersonalData]:
        """Return the fields marked with :class:`PersonalData`, by name."""
        found: dict[str, PersonalData] = {}
        for name, info in cls.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, PersonalData):
                    found[name] = meta
        return found

    def key(self) -> str | None:
        """Return the default Kafka key: the aggregate id, if the model declares one."""
        if self.aggregate_key is None:
            return None
        value = getattr(self, self.aggregate_key, None)
        return None if value is None else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


class BaseEvent(BaseModel):
    """The envelope every event travels in.

    On the wire it is seed 000's flat JSON object::

        {"event_id": "...", "event_type": "user.created", "event_version": 1,
         "timestamp": "2025-11-25T18:00:00Z", "source_service": "...",
         "correlation_id": null, "causation_id": null, "tenant_id": null,
         "priority": "normal", "data": {...}}

    Subclasses narrow ``data`` to an :class:`EventPayload` model.
    """

    model_config = ConfigDict(populate_by_name=True, use_enum_values=False)

    event_id: Annotated[uuid.UUID | str, Field(union_mode="left_to_right")] = Field(
        default_factory=uuid.uuid4
    )
    """A UUID when we generate it; other producers' ids (seed 004's ``evt-123456``) are kept
    as strings."""
    event_type: Annotated[
        str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
    ]
    event_version: int = Field(default=1, ge=1)
    timestamp: datetime = Field(default_factory=_now)
    source_service: str = "unknown"
    correlation_id: str | None = None
    causation_id: str | None = None
    tenant_id: str | None = None
    priority: Priority = Priority.NORMAL
    data: Any = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_validator("event_type", mode="before")
    @classmethod
    def _enum_to_str(cls, value: Any) -> Any:
        if isinstance(value, StrEnum):
            return str(value.value)
        return value

    def default_key(self) -> str | None:
        """The partition key used when the caller gives none: the payload's aggregate id."""
        if isinstance(self.data, EventPayload):
            return self.data.key()
        return None

    def caused(self, **changes: Any) -> dict[str, Any]:
        """Return correlation and causation fields for an event caused by this one."""
        return {
            "correlation_id": self.correlation_id or str(self.event_id),
            "causation_id": str(self.event_id),
            "tenant_id": self.tenant_id,
            **changes,
        }
