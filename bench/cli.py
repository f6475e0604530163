"""The command line: ``uv run python -m bench [--quick] [--broker B] [--scenario S ...]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from bench.runner import Options, ScenarioResult, run_scenario
from bench.scenarios import discover

DEFAULT_OUT = Path(__file__).parent / "results"


def _parser(names: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark eventbus against raw aiokafka, raw confluent-kafka and "
        "FastStream on a fresh embedded broker per scenario.",
    )
    p.add_argument("--quick", action="store_true", help="small N, 1 repetition (CI smoke, < 60 s)")
    p.add_argument("--broker", choices=["noida", "tansu"], default="noida")
    p.add_argument(
        "--scenario",
        nargs="+",
        choices=names,
        default=None,
        metavar="NAME",
        help=f"scenarios to run (default: all): {', '.join(names)}",
    )
    p.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default: 3, or 1 with --quick)"
    )
    p.add_argument(
        "--contender",
        nargs="+",
        default=(),
        metavar="SUBSTRING",
        help="only contenders whose key contains one of these",
    )
    p.add_argument(
        "--profile",
        metavar="KEY",
        help="run only this contender once under pyinstrument and print the profile",
    )
    p.add_argument(
        "--profile-all",
        action="store_true",
        help="with --profile: show every frame (library internals too)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where to write JSON and PNG results (default: {DEFAULT_OUT})",
    )
    p.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="soak: measured duration after the warm-up (default: 300, or 10 with --quick)",
    )
    p.add_argument(
        "--soak-rate",
        type=float,
        default=None,
        help="soak: events per second (default: 200, or 100 with --quick)",
    )
    p.add_argument("--list", action="store_true", help="list scenarios and contenders, then exit")
    return p


def _list(names: list[str]) -> None:
    scenarios = discover()
    for name in names:
        s = scenarios[name]
        print(f"{name}: {s.title}")
        for c in s.contenders:
            print(f"  {c.key:<36} {c.label}  (N quick {c.n_quick}, full {c.n_full})")


async def _run(options: Options, names: list[str]) -> list[ScenarioResult]:
    scenarios = discover()
    return [await run_scenario(scenarios[name], options) for name in names]


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if a contender failed (skips are fine)."""
    scenarios = discover()
    names = list(scenarios)
    args = _parser(names).parse_args(argv)
    if args.list:
        _list(names)
        return 0
    chosen = args.scenario or names
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    if leaked := sorted(k for k in os.environ if k.startswith("KAFKA_")):
        print(f"note: {', '.join(leaked)} set in the environment; eventbus contenders read them")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = Options(
        broker=args.broker,
        quick=args.quick,
        repeat=repeat,
        contenders=tuple(args.contender),
        profile=args.profile,
        profile_all=args.profile_all,
        out=args.out,
        params={
            k: v
            for k, v in (("soak_seconds", args.soak_seconds), ("soak_rate", args.soak_rate))
            if v is not None
        },
    )
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so every embedded broker is stopped.
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.perf_counter()
    results = asyncio.run(_run(options, chosen))

    from bench.report import print_result, write_outputs

    for result in results:
        print_result(result)
    if not options.profile:
        written = write_outputs(results, options.out)
        print(f"\nwrote {', '.join(str(p) for p in written.values())}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    failed = [r.contender.key for res in results for r in res.results if r.status == "failed"]
    if failed:
        print(f"FAILED contenders: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
