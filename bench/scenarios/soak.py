"""soak: an eventbus producer and consumer at a steady rate for minutes; does memory grow?

One process, one event loop: an eventbus producer sends fresh envelopes at a fixed rate
(``--soak-rate``, default 200/s; 100/s with ``--quick``) without awaiting them (each
acknowledgement is counted by a callback), and an eventbus consumer (``consume(handler)``,
its defaults) reads them. After a warm-up (10 % of the duration, 3-30 s) the process's
resident memory (``VmRSS`` in ``/proc/self/status``) is sampled every few seconds for
``--soak-seconds`` (default 300; 10 with ``--quick``).

Reported: RSS at the end of the warm-up and at the end, the growth in percent (target
< 10 %), the least-squares slope of the samples (MB/min), events produced (acknowledged)
and consumed, lost (produced but never consumed) and duplicates, and end-to-end latency
percentiles of the measured window. Each envelope carries its sequence number in
``correlation_id``; the bookkeeping (seen flags, latencies) is preallocated before the
clock starts, so the harness itself does not grow with the number of events. The broker's
RSS is sampled too (noida-db keeps every record in memory, so it grows by design).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.clients import eventbus_producer, start_eventbus_consumer
from bench.harness import BenchError, Contender, Measurement, RunContext, Scenario
from hrms.events import AuditEvent

RATE_FULL, RATE_QUICK = 200.0, 100.0
SECONDS_FULL, SECONDS_QUICK = 300.0, 10.0
WARMUP = "warm"


def _params(ctx: RunContext) -> tuple[float, float, float, float]:
    """(rate, measured seconds, warm-up seconds, sampling interval) for this run."""
    rate = float(ctx.params.get("soak_rate", RATE_QUICK if ctx.quick else RATE_FULL))
    seconds = float(ctx.params.get("soak_seconds", SECONDS_QUICK if ctx.quick else SECONDS_FULL))
    warmup = min(30.0, max(3.0, seconds * 0.1))
    interval = min(5.0, max(1.0, seconds / 60))
    return rate, seconds, warmup, interval


def _limit(ctx: RunContext) -> float:
    _, seconds, warmup, _ = _params(ctx)
    return warmup + seconds + 180.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of ``pid`` in MB (``VmRSS``), or 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _slope_per_min(ts: list[float], ys: list[float]) -> float:
    if len(ts) < 2:
        return 0.0
    return statistics.linear_regression(ts, ys).slope * 60.0


class Tally:
    """Preallocated bookkeeping: which sequence numbers arrived, and their latency."""

    def __init__(self, capacity: int) -> None:
        self.seen = bytearray(capacity)
        self.latency_ms = array.array("d", bytes(8 * capacity))
        self.consumed = 0
        self.duplicates = 0
        self.acked = 0
        self.failed = 0
        self.target = -1  # set when production ends
        self.warm = asyncio.Event()
        self.done = asyncio.Event()
        self.all_acked = asyncio.Event()

    def finish(self, sent: int) -> None:
        """Production is over: ``sent`` events were handed to the producer."""
        self.target = sent
        if self.consumed >= sent:
            self.done.set()
        if self.acked + self.failed >= sent:
            self.all_acked.set()

    def on_event(self, event: AuditEvent) -> None:
        now = time.time()
        seq = event.correlation_id
        if seq == WARMUP:
            self.warm.set()
            return
        i = int(seq or -1)
        if i < 0 or i >= len(self.seen):
            raise BenchError(f"unexpected sequence number {seq!r}")
        if self.seen[i]:
            self.duplicates += 1
            return
        self.seen[i] = 1
        self.consumed += 1
        self.latency_ms[i] = (now - event.timestamp.timestamp()) * 1000.0
        if self.consumed == self.target:
            self.done.set()

    def on_ack(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.failed += 1
        else:
            self.acked += 1
        if self.target >= 0 and self.acked + self.failed >= self.target:
            self.all_acked.set()


class Samples:
    """RSS samples of this process and of the broker, from the end of the warm-up on."""

    def __init__(self, ctx: RunContext) -> None:
        self.origin = ctx.timer.created
        self.broker_pid = ctx.broker.pid or 0
        self.t_s: list[float] = []
        self.rss_mb: list[float] = []
        self.broker_rss_mb: list[float] = []

    def take(self) -> None:
        self.t_s.append(round(time.perf_counter() - self.origin, 2))
        self.rss_mb.append(rss_mb())
        self.broker_rss_mb.append(rss_mb(self.broker_pid))

    def figures(self) -> dict[str, float]:
        rss, broker = self.rss_mb, self.broker_rss_mb
        return {
            "rss_warm_mb": rss[0],
            "rss_end_mb": rss[-1],
            "rss_max_mb": max(rss),
            "rss_growth_pct": (rss[-1] - rss[0]) / rss[0] * 100.0,
            "rss_slope_mb_per_min": _slope_per_min(self.t_s, rss),
            "broker_rss_warm_mb": broker[0],
            "broker_rss_end_mb": broker[-1],
            "samples": float(len(rss)),
        }

    def series(self) -> dict[str, list[float]]:
        return {"t_s": self.t_s, "rss_mb": self.rss_mb, "broker_rss_mb": self.broker_rss_mb}


async def _join(ctx: RunContext, producer: Any, tally: Tally) -> None:
    """Send warm-up probes until the consumer has joined and received one."""
    probe = ctx.pool.events[0].model_copy(update={"correlation_id": WARMUP})
    deadline = time.perf_counter() + 60
    while not tally.warm.is_set():
        if time.perf_counter() > deadline:
            raise BenchError("the consumer received no warm-up message within 60 s")
        await producer.enqueue(ctx.topic, probe)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.warm.wait(), 0.25)


async def eventbus_soak(ctx: RunContext) -> Measurement:
    """Produce at a fixed rate and consume, in one loop; sample RSS after the warm-up."""
    rate, seconds, warmup, interval = _params(ctx)
    tally = Tally(int(rate * (warmup + seconds)) + 1)
    samples = Samples(ctx)
    ctx.resolved.update(rate=rate, seconds=seconds, warmup_s=warmup, sample_every_s=interval)

    async def handle(event: AuditEvent) -> None:
        tally.on_event(event)

    consumer = await start_eventbus_consumer(ctx, "aiokafka", f"g-{ctx.run_id}")
    task = asyncio.create_task(consumer.consume(handle))
    try:
        async with eventbus_producer(ctx, "aiokafka") as producer:
            await _join(ctx, producer, tally)
            await _produce(ctx, producer, tally, samples, (rate, seconds, warmup, interval))
            with contextlib.suppress(TimeoutError):  # every acknowledged event must arrive
                await asyncio.wait_for(tally.done.wait(), 60.0)
            ctx.timer.stop()
            samples.take()
    finally:
        await consumer.stop()
        await task
    sent = tally.target
    if tally.failed:
        raise BenchError(f"{tally.failed} of {sent} sends were not acknowledged")
    lost = sent - tally.consumed
    warm_n = int(rate * warmup)
    window = sorted(tally.latency_ms[warm_n:sent])
    q = statistics.quantiles(window, n=100, method="inclusive")
    measurement = ctx.timer.measurement(
        sent - warm_n,
        series=samples.series(),
        rate=rate,
        soak_s=seconds,
        warmup_s=warmup,
        **samples.figures(),
        produced=float(sent),
        acknowledged=float(tally.acked),
        consumed=float(tally.consumed),
        lost=float(lost),
        duplicates=float(tally.duplicates),
        p50_ms=q[49],
        p99_ms=q[98],
        max_ms=window[-1],
    )
    if lost:
        raise BenchError(f"{lost} of {sent} acknowledged events never arrived: {measurement}")
    return measurement


async def _produce(
    ctx: RunContext,
    producer: Any,
    tally: Tally,
    samples: Samples,
    plan: tuple[float, float, float, float],
) -> None:
    """Send at ``rate`` for ``warmup + seconds``; sample RSS from the end of the warm-up."""
    rate, seconds, warmup, interval = plan
    templates = ctx.pool.events
    size = len(templates)
    period = 1.0 / rate
    t0 = time.perf_counter()
    t_end = t0 + warmup + seconds
    next_sample = t0 + warmup
    i = 0
    while True:
        now = time.perf_counter()
        if now >= next_sample:
            ctx.timer.start()  # at the end of the warm-up (idempotent)
            samples.take()
            next_sample += interval
        if now >= t_end:
            break
        due = t0 + i * period
        if due > now:
            await asyncio.sleep(min(due, next_sample) - now)  # pacing, not synchronisation
            continue
        event = templates[i % size].model_copy(
            update={
                "event_id": uuid.uuid4(),
                "timestamp": datetime.now(UTC),
                "correlation_id": str(i),
            }
        )
        fut = await producer.enqueue(ctx.topic, event)
        fut.add_done_callback(tally.on_ack)
        i += 1
    tally.finish(i)
    try:  # the last acknowledgements arrive within a linger and a round trip
        await asyncio.wait_for(tally.all_acked.wait(), 60.0)
    except TimeoutError:
        raise BenchError(f"{i - tally.acked - tally.failed} sends unacknowledged") from None


def chart(result: Any, path: Path) -> None:
    """RSS of the benchmark process (and of the broker) over time, per run."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    broker_ax = ax.twinx()
    top = 0.0
    for r in result.ok:
        for k, run in enumerate(r.runs):
            t = run.series.get("t_s", [])
            label = f"{r.contender.key} run {k + 1}"
            ax.plot(t, run.series.get("rss_mb", []), marker=".", label=f"{label}: client RSS")
            broker_ax.plot(
                t, run.series.get("broker_rss_mb", []), color="grey", alpha=0.5, linestyle="--"
            )
            warm = run.extra.get("rss_warm_mb")
            if warm:
                ax.axhline(warm * 1.1, color="red", linestyle=":", label="warm-up RSS + 10 %")
            top = max(top, (warm or 0.0) * 1.1, *run.series.get("rss_mb", [0.0]))
            ax.set_title(
                f"{result.scenario.title}\n{result.options.broker}, {result.options.mode}: "
                f"{run.extra.get('rate', 0):.0f} events/s for {run.extra.get('soak_s', 0):.0f} s "
                f"after {run.extra.get('warmup_s', 0):.0f} s warm-up; growth "
                f"{run.extra.get('rss_growth_pct', 0):+.1f} %, lost {run.extra.get('lost', 0):.0f}",
                fontsize=10,
            )
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("benchmark process RSS, MB")
    broker_ax.set_ylabel("broker RSS, MB (dashed grey)")
    ax.set_ylim(0, top * 1.15 or None)
    broker_ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


SCENARIO = Scenario(
    name="soak",
    title="soak: eventbus producer + consumer at a steady rate (RSS growth, lower is better)",
    description=(
        "One process: an eventbus producer at a fixed rate (default 200 events/s, "
        "--soak-rate) and an eventbus consumer. After a warm-up (10 % of the duration, "
        "3-30 s) VmRSS is sampled every few seconds for --soak-seconds (default 300). "
        "Reported: RSS at warm-up end and at the end, growth % (target < 10 %), slope, "
        "events produced/consumed/lost/duplicated, latency of the measured window."
    ),
    metric="throughput",
    order=70,
    max_repeat=1,
    run_limit_s=_limit,
    chart=chart,
    columns=[
        ("rss_warm_mb", "RSS warm MB"),
        ("rss_end_mb", "RSS end MB"),
        ("rss_growth_pct", "growth %"),
        ("lost", "lost"),
        ("p99_ms", "p99 ms"),
    ],
    contenders=[
        Contender(
            "eventbus-aiokafka-soak",
            "eventbus[aiokafka] enqueue -> consume(handler), steady rate",
            "eventbus",
            "aiokafka",
            eventbus_soak,
            n_quick=int(RATE_QUICK * SECONDS_QUICK),
            n_full=int(RATE_FULL * SECONDS_FULL),
            settings={"transport": "aiokafka"},
            notes="eventbus defaults on both sides; N is rate x measured seconds",
        )
    ],
)
