"""HRMS settings, from the environment (seed 001's variable names where they exist)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from hrms import topics


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class HrmsSettings(BaseSettings):
    """Settings shared by the HRMS services.

    Every field reads an environment variable (shown in its alias); the seeds' names
    (``KAFKA_ENABLE_PRODUCER``, ``KAFKA_NOTIFICATION_TOPIC``, ...) are kept.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path(".hrms"), validation_alias=_env("HRMS_DATA_DIR"))
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    jwt_secret: SecretStr | None = Field(
        default=None, min_length=32, validation_alias=_env("HRMS_JWT_SECRET")
    )
    jwt_ttl_s: int = Field(default=8 * 3600, gt=0, validation_alias=_env("HRMS_JWT_TTL"))
    enable_producer: bool = Field(default=True, validation_alias=_env("KAFKA_ENABLE_PRODUCER"))
    client_id: str = Field(default="hrms", validation_alias=_env("KAFKA_CLIENT_ID"))

    user_topic: str = Field(default=topics.USER_TOPIC, validation_alias=_env("KAFKA_USER_TOPIC"))
    employee_topic: str = Field(
        default=topics.EMPLOYEE_TOPIC, validation_alias=_env("KAFKA_EMPLOYEE_TOPIC")
    )
    leave_topic: str = Field(default=topics.LEAVE_TOPIC, validation_alias=_env("KAFKA_LEAVE_TOPIC"))
    attendance_topic: str = Field(
        default=topics.ATTENDANCE_TOPIC, validation_alias=_env("KAFKA_ATTENDANCE_TOPIC")
    )
    compliance_topic: str = Field(
        default=topics.COMPLIANCE_TOPIC, validation_alias=_env("KAFKA_COMPLIANCE_TOPIC")
    )
    notification_topic: str = Field(
        default=topics.NOTIFICATION_TOPIC, validation_alias=_env("KAFKA_NOTIFICATION_TOPIC")
    )
    audit_topic: str = Field(default=topics.AUDIT_TOPIC, validation_alias=_env("KAFKA_AUDIT_TOPIC"))
    topic_layout: Literal["domain", "event-type"] = Field(
        default="domain", validation_alias=_env("KAFKA_TOPIC_LAYOUT")
    )
    """``domain``: one topic per domain; ``event-type``: one per event type (hrms.routing)."""
    heartbeat_interval_s: float = Field(
        default=30.0, ge=0, validation_alias=_env("HRMS_HEARTBEAT_INTERVAL")
    )
    """Seconds between a service's ``service.health`` heartbeats; 0 sends none."""
    priority_topics: list[str] = Field(
        default_factory=lambda: [topics.INVENTORY_TOPIC, "inventory.low_stock"],
        validation_alias=_env("HRMS_PRIORITY_TOPICS"),
    )
    """Topics with priority lanes (``eventbus.PriorityLanes``): their CRITICAL and HIGH
    events overtake a backlog. The inventory topic under either layout by default; a JSON
    list in the environment, ``[]`` for none."""

    audit_url: str = Field(
        default="http://127.0.0.1:8007",
        validation_alias=_env("HRMS_AUDIT_URL", "AUDIT_SERVICE_URL"),
    )
    notification_url: str = Field(
        default="http://127.0.0.1:8006",
        validation_alias=_env("HRMS_NOTIFICATION_URL", "NOTIFICATION_SERVICE_URL"),
    )
    smtp_host: str = Field(default="127.0.0.1", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(default=8025, validation_alias=_env("SMTP_PORT"))
    mail_from: str = Field(default="hrms@localhost", validation_alias=_env("SMTP_FROM"))

    def url_for(self, service: str) -> str:
        """The database URL of ``service``: ``DATABASE_URL``, or its SQLite file.

        A ``{service}`` placeholder in ``DATABASE_URL`` is replaced by the service name,
        so one setting can give every service its own database on one server.
        """
        if self.database_url:
            return self.database_url.replace("{service}", service)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"

    def signing_key(self) -> str:
        """The JWT signing key: ``HRMS_JWT_SECRET``, or one generated and kept in the data dir.

        The generated key is for development: it is written once to ``<data dir>/jwt.key``
        (mode 0600) and read back by every service sharing that directory.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return self.kept_secret("jwt.key", 48)

    def kept_secret(self, name: str, nbytes: int) -> str:
        """A random secret generated once into ``<data dir>/<name>`` (mode 0600), then reused."""
        path = self.data_dir / name
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(nbytes))
        return path.read_text().strip()
