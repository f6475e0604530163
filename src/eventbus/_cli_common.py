"""What every ``eventbus`` command shares: consoles, one-line errors, settings, times."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from eventbus.errors import EventBusError

if TYPE_CHECKING:
    from eventbus.settings import KafkaSettings

console = Console()
err = Console(stderr=True)

_T = TypeVar("_T")

Bootstrap = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka address."),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--broker-profile",
        envvar="KAFKA_BROKER_PROFILE",
        help="kafka, noida, tansu or memory: the broker's declared features.",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def run(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work``; a user-facing error becomes one line and exit code 1.

    So does an error of the Kafka client library itself (a connection dropped mid-call):
    it is the broker's condition, not a bug of the command.
    """
    try:
        return asyncio.run(work)
    except EventBusError as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("aiokafka", "kafka", "confluent_kafka"):
            raise
        raise fail(f"Kafka client error: {type(exc).__name__}: {exc}") from exc


def kafka_settings(bootstrap_servers: str | None, broker_profile: str | None) -> KafkaSettings:
    """The settings of the ``KAFKA_*`` environment with the command's options applied."""
    from eventbus.settings import load_settings

    # The Kafka clients log each failed connection attempt; the command reports the
    # outcome itself, in one line, so their chatter would only bury it.
    for name in ("aiokafka", "kafka", "eventbus.librdkafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return load_settings(bootstrap_servers=bootstrap_servers, broker_profile=broker_profile)
    except EventBusError as exc:
        raise fail(str(exc)) from exc


def when(option: str, text: str | None) -> datetime | None:
    """Parse a time option (ISO 8601 or an age such as ``2h``); exit 2 if it is neither."""
    from eventbus.redrive import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except EventBusError as exc:
        raise fail(f"{option}: {exc}", 2) from exc
