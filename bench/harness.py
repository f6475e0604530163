"""The pieces every scenario shares: contenders, the timed section, runs and their statistics.

A *scenario* (one module in :mod:`bench.scenarios`) is a list of *contenders*: async
functions that do the same job with different clients. The runner gives every run a
:class:`RunContext` (the broker, a topic, the message count, the envelope pool and a
:class:`Timer`) and the contender marks the timed section with ``ctx.timer.start()`` and
``ctx.timer.stop()``; everything outside it (connecting, joining a group, warming up,
flushing the last commit) is not timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.brokers import PARTITIONS, BrokerSession
from bench.envelope import EnvelopePool

Family = Literal["eventbus", "aiokafka", "confluent", "faststream"]
Metric = Literal["throughput", "latency"]


class SkipContender(Exception):  # noqa: N818 - a signal, like pytest's Skipped
    """Raised by a contender that cannot run here (the reason is printed and recorded)."""


class BenchError(Exception):
    """A contender did not do its job (a record was not acknowledged, a count is wrong)."""


class Timer:
    """Marks the timed section of one run: wall clock, client CPU and broker CPU.

    ``start()`` and ``stop()`` may be called from a handler; only the first call of each
    counts, so "start at the first message" is simply ``ctx.timer.start()`` in the handler.
    """

    def __init__(self, broker_cpu: Callable[[], float | None]) -> None:
        self._broker_cpu = broker_cpu
        self.created = time.perf_counter()
        self.t0: float | None = None
        self.t1: float | None = None
        self._cpu0 = self._cpu1 = 0.0
        self._bcpu0: float | None = None
        self._bcpu1: float | None = None

    def start(self) -> None:
        """Begin the timed section (idempotent)."""
        if self.t0 is None:
            self._bcpu0 = self._broker_cpu()
            self._cpu0 = time.process_time()
            self.t0 = time.perf_counter()

    def stop(self) -> None:
        """End the timed section (idempotent)."""
        if self.t0 is not None and self.t1 is None:
            self.t1 = time.perf_counter()
            self._cpu1 = time.process_time()
            self._bcpu1 = self._broker_cpu()

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the timed section."""
        if self.t0 is None or self.t1 is None:
            raise BenchError("the contender never completed its timed section")
        return self.t1 - self.t0

    def measurement(
        self,
        n: int,
        *,
        series: Mapping[str, Sequence[float]] | None = None,
        **extra: float,
    ) -> Measurement:
        """The result of this run: ``n`` messages in the timed section, plus extra figures.

        ``series`` holds per-run sample lists (e.g. the soak's RSS samples) for the JSON.
        """
        seconds = self.seconds
        bcpu = None
        if self._bcpu0 is not None and self._bcpu1 is not None:
            bcpu = self._bcpu1 - self._bcpu0
        samples = {k: list(v) for k, v in (series or {}).items()}
        return Measurement(n, seconds, self._cpu1 - self._cpu0, bcpu, dict(extra), samples)


@dataclass(frozen=True)
class Measurement:
    """What one run measured.

    Attributes:
        n: messages handled in the timed section.
        seconds: wall-clock length of the timed section.
        cpu_s: CPU seconds of this (client) process, all threads, in the timed section.
        broker_cpu_s: CPU seconds of the broker process in the timed section.
        extra: scenario-specific figures (``join_s``, ``p50_ms``, ...).
        series: scenario-specific sample lists (``t_s``, ``rss_mb``, ...), kept in the JSON.
    """

    n: int
    seconds: float
    cpu_s: float
    broker_cpu_s: float | None
    extra: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The run as a JSON object."""
        return {
            "n": self.n,
            "seconds": round(self.seconds, 4),
            "msgs_per_s": round(self.rate, 1),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_us_per_msg": round(self.cpu_s / self.n * 1e6, 2) if self.n else None,
            "broker_cpu_s": None if self.broker_cpu_s is None else round(self.broker_cpu_s, 3),
            **{k: round(v, 4) for k, v in self.extra.items()},
            **({"series": self.series} if self.series else {}),
        }


@dataclass
class RunContext:
    """Everything a contender needs for one run.

    ``state`` is what the scenario's setup prepared (shared by all runs); ``resolved`` is
    where a contender writes the settings it resolved at run time (recorded in the JSON);
    ``params`` are scenario parameters from the command line (e.g. ``soak_seconds``).
    """

    broker: BrokerSession
    topic: str
    n: int
    pool: EnvelopePool
    timer: Timer
    run_id: str
    quick: bool
    state: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        """The broker's bootstrap servers."""
        return self.broker.bootstrap


ContenderFn = Callable[[RunContext], Awaitable[Measurement]]


@dataclass(frozen=True)
class Contender:
    """One way of doing a scenario's job.

    Attributes:
        key: stable identifier (used in JSON, on the command line and in charts).
        label: human-readable name.
        family: eventbus, aiokafka, confluent or faststream (colours the charts).
        client: the Kafka client underneath (``aiokafka`` or ``confluent-kafka``).
        run: the async function doing one run.
        n_quick: messages per run with ``--quick``.
        n_full: messages per run otherwise (chosen for >= 2 s per run on the reference box).
        settings: every setting the harness changes from the client's own defaults.
        effective: notable effective settings (library defaults that matter for the result).
        notes: what the reader should know to compare this contender fairly.
    """

    key: str
    label: str
    family: Family
    client: str
    run: ContenderFn
    n_quick: int
    n_full: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    effective: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def n(self, quick: bool) -> int:
        """Messages per run in this mode."""
        return self.n_quick if quick else self.n_full


@dataclass(frozen=True)
class Comparison:
    """A ratio to report: ``numerator``'s median over ``denominator``'s (contender keys)."""

    label: str
    numerator: str
    denominator: str
    figure: str = "msgs_per_s"


SetupFn = Callable[
    [BrokerSession, EnvelopePool, Sequence[Contender], bool], Awaitable[dict[str, Any]]
]
TeardownFn = Callable[[dict[str, Any]], Awaitable[None]]
ChartFn = Callable[[Any, Path], None]  # (ScenarioResult, path)


@dataclass(frozen=True)
class Scenario:
    """A benchmark: contenders doing the same job, on a fresh broker.

    Attributes:
        name: command-line name and result file stem.
        title: one line for the table and the chart.
        description: what is measured, for the JSON and the README.
        metric: ``throughput`` (msgs/s, higher is better) or ``latency`` (ms, lower is better).
        contenders: the contenders, in their first-repetition order.
        topic_per_run: create a fresh 3-partition topic per run (deleted after the run).
        setup: prepares shared state once per scenario (e.g. a pre-filled topic).
        teardown: releases what ``setup`` started (e.g. a database server); always runs.
        comparisons: ratios worth reporting.
        order: position in the default run order.
        partitions: partitions of the per-run topic.
        max_repeat: at most this many repetitions, whatever ``--repeat`` says (a soak).
        run_limit_s: the time limit of one run, from the run's context (default: 90 s
            with ``--quick``, 300 s otherwise).
        columns: extra figures to show in the terminal table, as ``(figure, header)``.
        chart: draws ``<scenario>.png`` instead of the default bar chart.
        unit: what the rate counts, for the table and the chart (``msgs/s``, ``requests/s``).
    """

    name: str
    title: str
    description: str
    metric: Metric
    contenders: Sequence[Contender]
    topic_per_run: bool = True
    setup: SetupFn | None = None
    teardown: TeardownFn | None = None
    comparisons: Sequence[Comparison] = ()
    order: int = 100
    partitions: int = PARTITIONS
    max_repeat: int | None = None
    run_limit_s: Callable[[RunContext], float] | None = None
    columns: Sequence[tuple[str, str]] = ()
    chart: ChartFn | None = None
    unit: str = "msgs/s"


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


@dataclass
class ContenderResult:
    """All runs of one contender in one scenario."""

    contender: Contender
    runs: list[Measurement] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    status: Literal["ok", "skipped", "failed"] = "ok"
    reason: str = ""
    resolved: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def figure(self, name: str) -> list[float]:
        """Per-run values of ``name`` (``msgs_per_s``, ``cpu_us_per_msg`` or an extra)."""
        out: list[float] = []
        for m in self.runs:
            value = m.as_json().get(name)
            if isinstance(value, int | float):
                out.append(float(value))
        return out

    def median(self, name: str) -> float | None:
        """Median of ``name`` over the runs, or None."""
        values = self.figure(name)
        return statistics.median(values) if values else None

    def as_json(self) -> dict[str, Any]:
        """The contender's result as a JSON object."""
        c = self.contender
        out: dict[str, Any] = {
            "key": c.key,
            "label": c.label,
            "family": c.family,
            "client": c.client,
            "settings": dict(c.settings),
            "effective": dict(c.effective),
            "resolved": dict(self.resolved),
            "notes": c.notes,
            "status": self.status,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.errors:
            out["failed_runs"] = list(self.errors)
        if self.runs:
            out["n"] = self.runs[0].n
            out["runs"] = [
                {"order_position": pos, **m.as_json()}
                for pos, m in zip(self.positions, self.runs, strict=True)
            ]
            names = [k for k, v in out["runs"][0].items() if isinstance(v, int | float)]
            for name in names:
                if name in {"order_position", "n"}:
                    continue
                values = self.figure(name)
                if values:
                    out[name] = spread(values)
        return out
