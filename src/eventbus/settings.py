"""Settings from the seeds' ``KAFKA_*`` environment variables (pydantic-settings).

Keyword arguments given to a client override the environment. Names from the other
seeds are accepted as aliases: ``KAFKA_BROKERS`` (seed 002), ``KAFKA_CONSUMER_GROUP``,
``KAFKA_AUTO_OFFSET_RESET`` and ``KAFKA_ENABLE_AUTO_COMMIT`` (seed 004).

Where our defaults differ from seed 000's example values, safety decided:

* ``producer_acks`` is ``all`` (seed 000: ``1``): a leader crash cannot lose an acked event.
* the idempotent producer is on wherever the broker and client support it.
* offsets are committed only after the handler succeeded, even if
  ``KAFKA_ENABLE_AUTO_COMMIT=true`` is set (it then only means "commit in the background").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventbus._features import PROFILES, Features
from eventbus.errors import ConfigurationError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


def _env(*names: str) -> Any:
    return AliasChoices(*names)


class KafkaSettings(BaseSettings):
    """Every Kafka setting the library reads, with its environment variable(s)."""

    model_config = SettingsConfigDict(
        env_file=None, populate_by_name=True, extra="ignore", case_sensitive=False
    )

    bootstrap_servers: str | None = Field(
        default=None, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS")
    )
    client_id: str = Field(default="eventbus", validation_alias=_env("KAFKA_CLIENT_ID"))
    transport: Literal["aiokafka", "confluent"] = Field(
        default="aiokafka", validation_alias=_env("KAFKA_TRANSPORT")
    )
    broker_profile: str = Field(default="kafka", validation_alias=_env("KAFKA_BROKER_PROFILE"))
    connect_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias=_env("KAFKA_CONNECT_TIMEOUT")
    )
    max_message_bytes: int = Field(
        default=1_000_000, gt=0, validation_alias=_env("KAFKA_MAX_MESSAGE_BYTES")
    )

    producer_acks: Literal["0", "1", "all", "-1"] = Field(
        default="all", validation_alias=_env("KAFKA_PRODUCER_ACKS")
    )
    producer_retries: int = Field(default=5, ge=0, validation_alias=_env("KAFKA_PRODUCER_RETRIES"))
    producer_compression: Compression = Field(
        default="none", validation_alias=_env("KAFKA_PRODUCER_COMPRESSION")
    )
    producer_linger_ms: int = Field(
        default=5, ge=0, validation_alias=_env("KAFKA_PRODUCER_LINGER_MS")
    )
    producer_enable_idempotence: bool | None = Field(
        default=None, validation_alias=_env("KAFKA_PRODUCER_ENABLE_IDEMPOTENCE")
    )
    producer_request_timeout_ms: int = Field(
        default=30_000, gt=0, validation_alias=_env("KAFKA_PRODUCER_REQUEST_TIMEOUT_MS")
    )

    consumer_group_id: str | None = Field(
        default=None, validation_alias=_env("KAFKA_CONSUMER_GROUP_ID", "KAFKA_CONSUMER_GROUP")
    )
    consumer_auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        validation_alias=_env("KAFKA_CONSUMER_AUTO_OFFSET_RESET", "KAFKA_AUTO_OFFSET_RESET"),
    )
    consumer_max_poll_records: int = Field(
        default=500, gt=0, validation_alias=_env("KAFKA_CONSUMER_MAX_POLL_RECORDS")
    )
    consumer_enable_auto_commit: bool = Field(
        default=False,
        validation_alias=_env("KAFKA_ENABLE_AUTO_COMMIT", "KAFKA_CONSUMER_ENABLE_AUTO_COMMIT"),
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, gt=0, validation_alias=_env("KAFKA_CONSUMER_SESSION_TIMEOUT_MS")
    )
    consumer_heartbeat_interval_ms: int = Field(
        default=3_000, gt=0, validation_alias=_env("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS")
    )
    consumer_group_instance_id: str | None = Field(
        default=None, validation_alias=_env("KAFKA_CONSUMER_GROUP_INSTANCE_ID")
    )
    consumer_isolation_level: Literal["read_uncommitted", "read_committed"] = Field(
        default="read_uncommitted", validation_alias=_env("KAFKA_CONSUMER_ISOLATION_LEVEL")
    )
    consumer_commit_interval_ms: int = Field(
        default=1_000, gt=0, validation_alias=_env("KAFKA_CONSUMER_COMMIT_INTERVAL_MS")
    )
    consumer_stall_threshold_s: float = Field(
        default=60.0, gt=0, validation_alias=_env("KAFKA_CONSUMER_STALL_THRESHOLD_S")
    )
    """How long a partition's committed offset may stand still while its lag grows
    before the consumer counts as stalled (``/ready`` fails, a warning is logged)."""

    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    sasl_mechanism: SaslMechanism = Field(
        default="PLAIN", validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    sasl_username: str | None = Field(default=None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    sasl_password: SecretStr | None = Field(
        default=None, validation_alias=_env("KAFKA_SASL_PASSWORD")
    )
    sasl_oauth_token: SecretStr | None = Field(
        default=None, validation_alias=_env("KAFKA_SASL_OAUTH_TOKEN")
    )
    ssl_cafile: str | None = Field(
        default=None, validation_alias=_env("KAFKA_SSL_CAFILE", "KAFKA_SSL_CA_LOCATION")
    )
    ssl_certfile: str | None = Field(
        default=None, validation_alias=_env("KAFKA_SSL_CERTFILE", "KAFKA_SSL_CERTIFICATE_LOCATION")
    )
    ssl_keyfile: str | None = Field(
        default=None, validation_alias=_env("KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_LOCATION")
    )
    ssl_password: SecretStr | None = Field(
        default=None, validation_alias=_env("KAFKA_SSL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD")
    )
    ssl_check_hostname: bool = Field(
        default=True, validation_alias=_env("KAFKA_SSL_CHECK_HOSTNAME")
    )

    @field_validator("producer_acks", mode="before")
    @classmethod
    def _acks(cls, value: Any) -> Any:
        return str(value).lower() if value is not None else value

    @field_validator("producer_compression", mode="before")
    @classmethod
    def _compression(cls, value: Any) -> Any:
        return "none" if value in (None, "") else str(value).lower()

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return str(value).upper() if isinstance(value, str) else value

    @field_validator("broker_profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown broker profile {value!r}; one of {sorted(PROFILES)}")
        return value

    @property
    def servers(self) -> str:
        """The bootstrap servers, defaulting to ``localhost:9092`` as the seeds do."""
        return self.bootstrap_servers or "localhost:9092"

    @property
    def features(self) -> Features:
        """The declared capabilities of the configured broker."""
        return PROFILES[self.broker_profile]

    def idempotence(self) -> bool:
        """Whether to enable the idempotent producer for this broker and transport."""
        if self.producer_acks not in ("all", "-1"):
            return False
        if self.producer_enable_idempotence is not None:
            return self.producer_enable_idempotence
        return self.features.idempotence_for(self.transport)


def load_settings(settings: KafkaSettings | None = None, **overrides: Any) -> KafkaSettings:
    """Build settings from the environment, then apply non-None keyword overrides.

    Raises:
        ConfigurationError: a value is invalid; the message names the setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        if settings is not None:
            return (
                settings.model_copy(update=given)
                if not given
                else KafkaSettings(**{**settings.model_dump(), **given})
            )
        return KafkaSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid Kafka settings: {problems}") from exc
