"""Prometheus metrics: an observer that counts and times what the clients do.

Example::

    from eventbus import observe
    from eventbus.metrics import PrometheusMetrics, metrics_router

    metrics = observe.install(PrometheusMetrics())
    app.include_router(metrics_router(metrics))      # GET /metrics

Every metric, with its labels (``tenant`` is the envelope's tenant id, empty for events
without one; ``event_type`` is the record's ``event_type`` header, ``*`` for a batch):

========================================  ==========  =======================================
name                                      type        labels
========================================  ==========  =======================================
``eventbus_events_published_total``       counter     topic, event_type, tenant
``eventbus_publish_errors_total``         counter     topic, event_type, tenant
``eventbus_publish_latency_seconds``      histogram   topic (hand-over to acknowledgement)
``eventbus_events_consumed_total``        counter     group, topic, event_type, tenant
``eventbus_events_failed_total``          counter     group, topic, event_type, tenant
``eventbus_events_retried_total``         counter     group, topic, event_type, tenant
``eventbus_events_dead_lettered_total``   counter     group, topic, event_type, tenant
``eventbus_events_skipped_total``         counter     group, topic, event_type, tenant
``eventbus_handler_duration_seconds``     histogram   group, topic, event_type
``eventbus_consumer_lag``                 gauge       group, topic, partition
``eventbus_consumer_stalled``             gauge       group, topic, partition (1 = stalled)
``eventbus_outbox_backlog``               gauge       outbox (undelivered rows)
``eventbus_outbox_oldest_age_seconds``    gauge       outbox
========================================  ==========  =======================================

Consumer lag is the high watermark of the last fetch minus the committed offset, so it
is right on brokers whose ListOffsets answers cannot be trusted (Tansu's). Tenants are
labels: a deployment with very many tenants should drop the label in its scrape config
(``metric_relabel_configs``) rather than store a series per tenant.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(
        "eventbus.metrics needs prometheus-client: pip install prometheus-client"
    ) from exc

from eventbus import headers as h
from eventbus._codec import header_value
from eventbus._transport.base import Record, TopicPartition
from eventbus.observe import Headers, Observer, Outcome, PartitionProgress, SendDone

if TYPE_CHECKING:  # FastAPI stays an optional import of this module
    from fastapi import APIRouter

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_EVENT = ("group", "topic", "event_type", "tenant")
_PARTITION = ("group", "topic", "partition")


class PrometheusMetrics(Observer):
    """The eventbus metrics in a Prometheus registry (see the module's table).

    Args:
        registry: where the metrics live; a registry of their own by default, so two
            applications in one process (``hrms up``) each serve only theirs. Pass
            ``prometheus_client.REGISTRY`` to join the process-wide default.
        buckets: the histograms' bucket bounds in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = _LATENCY_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        published = ("topic", "event_type", "tenant")
        self.published = Counter(
            "eventbus_events_published",
            "Records acknowledged by the broker.",
            published,
            registry=r,
        )
        self.publish_errors = Counter(
            "eventbus_publish_errors",
            "Records the broker did not acknowledge.",
            published,
            registry=r,
        )
        self.publish_latency = Histogram(
            "eventbus_publish_latency_seconds",
            "Seconds from handing a record to the client to its acknowledgement.",
            ("topic",),
            buckets=buckets,
            registry=r,
        )
        self.outcomes = {
            "processed": Counter(
                "eventbus_events_consumed", "Records handled successfully.", _EVENT, registry=r
            ),
            "failed": Counter(
                "eventbus_events_failed",
                "Records whose handler kept failing under the retry policy.",
                _EVENT,
                registry=r,
            ),
            "retried": Counter(
                "eventbus_events_retried",
                "Further attempts at a record (in place or through a retry topic).",
                _EVENT,
                registry=r,
            ),
            "dead_lettered": Counter(
                "eventbus_events_dead_lettered", "Records dead-lettered.", _EVENT, registry=r
            ),
            "skipped": Counter(
                "eventbus_events_skipped",
                "Records with no handler for their type.",
                _EVENT,
                registry=r,
            ),
        }
        self.handler_duration = Histogram(
            "eventbus_handler_duration_seconds",
            "Seconds spent handling a record or a batch, retries included.",
            ("group", "topic", "event_type"),
            buckets=buckets,
            registry=r,
        )
        self.lag = Gauge(
            "eventbus_consumer_lag",
            "Records not committed yet, per partition.",
            _PARTITION,
            registry=r,
        )
        self.stalled = Gauge(
            "eventbus_consumer_stalled",
            "1 while the partition's committed offset stands still under growing lag.",
            _PARTITION,
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "eventbus_outbox_backlog", "Undelivered outbox rows.", ("outbox",), registry=r
        )
        self.outbox_age = Gauge(
            "eventbus_outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox row (0 when empty).",
            ("outbox",),
            registry=r,
        )
        self._partitions: dict[str, set[TopicPartition]] = {}

    # -- the hooks --------------------------------------------------------------------------
    def sending(self, topic: str, headers: Headers) -> SendDone | None:
        started = time.perf_counter()
        labels = (topic, _text(headers, h.EVENT_TYPE), _text(headers, h.TENANT_ID))

        def done(error: BaseException | None) -> None:
            if error is None:
                self.published.labels(*labels).inc()
                self.publish_latency.labels(topic).observe(time.perf_counter() - started)
            else:
                self.publish_errors.labels(*labels).inc()

        return done

    @contextlib.contextmanager
    def handling(self, group: str, records: Sequence[Record]) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            first = records[0]
            etype = _text(first.headers, h.EVENT_TYPE) if len(records) == 1 else "*"
            self.handler_duration.labels(group, first.topic, etype).observe(
                time.perf_counter() - started
            )

    def outcome(self, group: str, record: Record, outcome: Outcome) -> None:
        self.outcomes[outcome].labels(
            group,
            record.topic,
            _text(record.headers, h.EVENT_TYPE),
            _text(record.headers, h.TENANT_ID),
        ).inc()

    def progress(self, group: str, partitions: dict[TopicPartition, PartitionProgress]) -> None:
        for tp in self._partitions.get(group, set()) - partitions.keys():
            labels = (group, tp.topic, str(tp.partition))
            for gauge in (self.lag, self.stalled):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        for tp, p in partitions.items():
            labels = (group, tp.topic, str(tp.partition))
            self.lag.labels(*labels).set(p.lag)
            self.stalled.labels(*labels).set(1 if p.stalled else 0)
        self._partitions[group] = set(partitions)

    def backlog(self, outbox: str, rows: int, oldest_age_s: float) -> None:
        self.outbox_backlog.labels(outbox).set(rows)
        self.outbox_age.labels(outbox).set(oldest_age_s)

    # -- exposition -------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def _text(headers: Sequence[tuple[str, bytes]], name: str) -> str:
    return header_value(headers, name) or ""


def metrics_router(metrics: PrometheusMetrics, path: str = "/metrics") -> APIRouter:
    """A FastAPI router serving ``metrics`` at ``GET path`` in Prometheus' text format."""
    from fastapi import APIRouter
    from fastapi.responses import Response

    router = APIRouter()

    @router.get(path, include_in_schema=False)
    async def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
