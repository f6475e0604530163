"""Operating a cluster: what the ``eventbus`` command line does, as a library.

::

    from eventbus.ops import Admin, consumer_lag, describe_topic, tail

    async with Admin() as admin:                      # KAFKA_* from the environment
        info = await describe_topic(admin, "user-queue")
        for group in await consumer_lag(admin):
            print(group.group_id, group.total)
        async for event in tail(admin, ["user-queue"], last=5):
            print(event.event_type, event.preview())

Offsets are right on every broker: where a broker's ListOffsets answers are wrong
(``Features.correct_end_offsets`` is False: Tansu), end offsets come from fetch high
watermarks and offsets for a time from reading. Reading (``tail``, copying a replay)
uses manual assignment: no consumer group is joined and nothing is committed. Changing a
group's offsets (``apply_reset``, ``run_replay``) refuses while the group has members.
"""

from eventbus.ops._admin import Admin, GroupActiveError
from eventbus.ops._groups import (
    GroupLag,
    OffsetMove,
    PartitionLag,
    ResetPlan,
    ResetTo,
    UnknownGroupError,
    apply_reset,
    consumer_lag,
    ensure_inactive,
    plan_reset,
)
from eventbus.ops._publish import (
    InvalidEventError,
    Published,
    build_events,
    load_registry,
    parse_events,
    publish_events,
)
from eventbus.ops._reader import PartitionReader
from eventbus.ops._replay import ReplayPlan, ReplayRange, ReplayResult, plan_replay, run_replay
from eventbus.ops._tail import EventFilter, EventView, TailStart, tail
from eventbus.ops._topics import PartitionInfo, TopicInfo, describe_topic, describe_topics

__all__ = [
    "Admin",
    "EventFilter",
    "EventView",
    "GroupActiveError",
    "GroupLag",
    "InvalidEventError",
    "OffsetMove",
    "PartitionInfo",
    "PartitionLag",
    "PartitionReader",
    "Published",
    "ReplayPlan",
    "ReplayRange",
    "ReplayResult",
    "ResetPlan",
    "ResetTo",
    "TailStart",
    "TopicInfo",
    "UnknownGroupError",
    "apply_reset",
    "build_events",
    "consumer_lag",
    "describe_topic",
    "describe_topics",
    "ensure_inactive",
    "load_registry",
    "parse_events",
    "plan_replay",
    "plan_reset",
    "publish_events",
    "run_replay",
    "tail",
]
