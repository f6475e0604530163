"""Settings from the seeds' environment names; the retry policy; the partitioner; exports."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

import eventbus
from eventbus import ConfigurationError, DeadLetterNow, RetryLater, RetryPolicy
from eventbus._partitioner import murmur2, partition_for
from eventbus.settings import KafkaSettings, load_settings


def test_seed_000_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "KAFKA_PRODUCER_ACKS": "1",
        "KAFKA_PRODUCER_RETRIES": "3",
        "KAFKA_PRODUCER_COMPRESSION": "lz4",
        "KAFKA_CONSUMER_GROUP_ID": "my-service-group",
        "KAFKA_CONSUMER_AUTO_OFFSET_RESET": "latest",
        "KAFKA_CONSUMER_MAX_POLL_RECORDS": "100",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "scram-sha-512",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CAFILE": "/etc/ca.pem",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.servers == "kafka:9092"
    assert s.producer_acks == "1"
    assert s.producer_retries == 3
    assert s.producer_compression == "lz4"
    assert s.consumer_group_id == "my-service-group"
    assert s.consumer_auto_offset_reset == "latest"
    assert s.consumer_max_poll_records == 100
    assert s.security_protocol == "SASL_SSL"
    assert s.sasl_mechanism == "SCRAM-SHA-512"
    assert s.sasl_password is not None
    assert s.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.ssl_cafile == "/etc/ca.pem"
    assert s.idempotence() is False  # acks=1 cannot be idempotent


def test_aliases_from_seeds_002_and_004(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "ns.servicebus.windows.net:9093")
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", "sales-service-group")
    monkeypatch.setenv("KAFKA_AUTO_OFFSET_RESET", "earliest")
    monkeypatch.setenv("KAFKA_ENABLE_AUTO_COMMIT", "True")
    s = load_settings()
    assert s.servers == "ns.servicebus.windows.net:9093"
    assert s.consumer_group_id == "sales-service-group"
    assert s.consumer_enable_auto_commit is True


def test_keywords_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    s = load_settings(bootstrap_servers="from-arg:9092", client_id="svc")
    assert s.servers == "from-arg:9092"
    assert s.client_id == "svc"
    again = load_settings(s, client_id="other")
    assert again.servers == "from-arg:9092"
    assert again.client_id == "other"


def test_safe_defaults() -> None:
    s = KafkaSettings()
    assert s.producer_acks == "all"
    assert s.idempotence() is True
    assert s.consumer_enable_auto_commit is False
    assert load_settings(broker_profile="tansu").idempotence() is False  # aiokafka on Tansu
    assert load_settings(broker_profile="tansu", transport="confluent").idempotence() is True


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"producer_acks": "2"}, "producer_acks"),
        ({"producer_compression": "brotli"}, "producer_compression"),
        ({"broker_profile": "rabbit"}, "unknown broker profile"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"consumer_max_poll_records": 0}, "consumer_max_poll_records"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        load_settings(**kwargs)


@pytest.mark.parametrize("key", [b"", b"a", b"ab", b"abc", b"abcd", b"user-42", "ü".encode() * 9])
def test_murmur2_matches_aiokafka(key: bytes) -> None:
    assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF
    assert partition_for(key, 7) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % 7


async def test_retry_policy_classifies_and_backs_off() -> None:
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    policy = RetryPolicy(
        attempts=4, initial_backoff_s=0.1, max_backoff_s=0.3, jitter_s=0, sleep=fake_sleep
    )
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError("slow")

    outcome = await policy.run(flaky)
    assert outcome.ok
    assert outcome.attempts == 3
    assert waits == [0.1, 0.2]

    async def always() -> None:
        raise ConnectionError("down")

    waits.clear()
    outcome = await policy.run(always)
    assert not outcome.ok
    assert outcome.attempts == 4
    assert isinstance(outcome.error, ConnectionError)
    assert waits == [0.1, 0.2, 0.3]

    for fatal in (ValueError("x"), DeadLetterNow("y")):

        async def raise_it(exc: Exception = fatal) -> None:
            raise exc

        if isinstance(fatal, ValueError):
            assert (await policy.run(raise_it)).attempts == 4  # plain ValueError is retryable
        else:
            assert (await policy.run(raise_it)).attempts == 1
    assert policy.is_retryable(RetryLater())
    from pydantic import BaseModel, ValidationError

    class M(BaseModel):
        n: int

    with pytest.raises(ValidationError) as info:
        M(n="x")  # type: ignore[arg-type]
    assert not policy.is_retryable(info.value)
    with pytest.raises(ConfigurationError):
        RetryPolicy(attempts=0)
    assert asyncio.iscoroutinefunction(policy.run)


def test_all_is_sorted_and_honest() -> None:
    names = eventbus.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    public = {n for n in dir(eventbus) if not n.startswith("_")}
    modules = {
        "catalog",
        "errors",
        "headers",
        "settings",
        "testing",
        "fastapi",
        "cli",
        "inbox",
        "outbox",
        "ops",
        "redrive",
        "observe",
        "metrics",
        "tracing",
        "asyncapi",
    }
    assert set(names) == public - modules
    assert 20 <= len(names) <= 45
