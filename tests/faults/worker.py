"""A consumer service run as its own process, for the SIGKILL scenario.

    python -m tests.faults.worker --bootstrap HOST:PORT --topic T --group G --db effects.sqlite3 \
        --progress progress.json --name w1 [--instance-id ID] [--profile noida] \
        [--transport aiokafka]

It consumes ``--topic`` with the inbox as middleware and writes each event's effect to
the SQLite file ``--db`` (WAL, shared with the test), and rewrites ``--progress`` (JSON:
processed, dead-lettered, duplicates skipped by the inbox, handler calls) every 50 ms.
SIGTERM (or SIGINT) stops it gracefully: the message in hand finishes, offsets are
committed, the group is left, the progress file is written a last time.

``--hang-in-txn FILE`` (test instrumentation; aiokafka's ``AIOKafkaProducer`` is patched
in this process only): the first dead-letter transaction writes its record, then writes
FILE and never commits, so the test can SIGKILL the process inside that transaction. The
progress file also says whether a dead-letter transaction is open (``in_txn``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

from eventbus import KafkaConsumer, KafkaSettings, RetryPolicy
from tests.faults.workload import Effects, TxnGate

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


def _write_progress(
    path: Path, consumer: KafkaConsumer, effects: Effects, gate: TxnGate, state: str
) -> None:
    s = consumer.stats
    data = {
        "in_txn": gate.in_txn,
        "txns": gate.txns,
        "pid": os.getpid(),
        "state": state,
        "processed": s.processed,
        "dead_lettered": s.dead_lettered,
        "commit_failures": s.commit_failures,
        "duplicates": effects.inbox.duplicates.total(),
        "calls": effects.calls,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: the test never reads half a file


async def main(args: argparse.Namespace) -> None:
    gate = TxnGate(hang=Path(args.hang_in_txn) if args.hang_in_txn else None)
    gate.install()
    effects = Effects(Path(args.db), worker=args.name)
    await effects.create()
    overrides: dict[str, object] = {
        "bootstrap_servers": args.bootstrap,
        "broker_profile": args.profile,
        "transport": args.transport,
        "consumer_commit_interval_ms": args.commit_interval_ms,
        "client_id": args.name,
    }
    if args.instance_id:
        overrides["consumer_group_instance_id"] = args.instance_id
    consumer = KafkaConsumer(
        group_id=args.group,
        topics=[args.topic],
        settings=KafkaSettings(**overrides),  # type: ignore[arg-type]
        retry=FAST_RETRY,
    )
    consumer.use(effects.middleware())
    progress = Path(args.progress)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    task = asyncio.create_task(consumer.consume(effects.handle))
    try:
        while not stop.is_set() and not task.done():
            _write_progress(progress, consumer, effects, gate, "consuming")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await consumer.stop()
        await task
        _write_progress(progress, consumer, effects, gate, "stopped")
        await effects.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--profile", default="noida")
    parser.add_argument("--transport", default="aiokafka")
    parser.add_argument("--commit-interval-ms", type=int, default=1000)
    parser.add_argument("--hang-in-txn", default="")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
