"""The transactional outbox: events written with the business change, published after.

Write events with :meth:`Outbox.add` inside the database transaction that makes the
change; run an :class:`OutboxRelay` to publish them to Kafka in order per key::

    from eventbus.outbox import Outbox, OutboxRelay

    outbox = Outbox()
    async with session.begin():
        session.add(leave)
        await outbox.add(session, "leave-queue", event)

    async with OutboxRelay(outbox, engine, producer):
        ...  # the relay publishes in the background

Guarantees and limits: ``docs/guarantees.md``.
"""

from eventbus.headers import TRACEPARENT
from eventbus.outbox._claim import OutboxRow
from eventbus.outbox._relay import OutboxRelay, RelayStats
from eventbus.outbox._table import Backlog, Outbox

__all__ = ["TRACEPARENT", "Backlog", "Outbox", "OutboxRelay", "OutboxRow", "RelayStats"]
