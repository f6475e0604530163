"""Every service's ``service.health`` heartbeat, straight through its producer."""

from __future__ import annotations

from eventbus import BaseEvent
from hrms.events import ServiceHealthData, SystemEvent
from tests.services.conftest import Harness, eventually


def beats_of(seen: list[BaseEvent], service: str) -> list[ServiceHealthData]:
    return [
        e.data
        for e in seen
        if isinstance(e, SystemEvent) and e.data.service == service and e.data.status == "up"
    ]


async def test_every_service_beats_on_system_events(harness: Harness) -> None:
    seen = await harness.collect("system-events")
    await harness.start("leaves", heartbeat_interval_s=0.05)
    await harness.start("audit", heartbeat_interval_s=0.05)
    await eventually(
        lambda: len(beats_of(seen, "leaves")) >= 3 and len(beats_of(seen, "audit")) >= 3,
        what="three beats of each service",
    )
    beat = next(e for e in seen if isinstance(e, SystemEvent) and e.data.service == "leaves")
    assert beat.event_type == "service.health"
    assert beat.source_service == "hrms-leaves"
    assert beat.tenant_id is None
    assert beat.default_key() == "leaves"  # one service's beats stay in order
    uptimes = [b.uptime_s for b in beats_of(seen, "leaves")]
    assert uptimes == sorted(uptimes)
    assert all(b.instance for b in beats_of(seen, "leaves"))


async def test_beats_go_to_their_own_topic_in_the_event_type_layout(harness: Harness) -> None:
    seen = await harness.collect("service.health")
    await harness.start("leaves", heartbeat_interval_s=0.05, topic_layout="event-type")
    await eventually(lambda: beats_of(seen, "leaves"), what="a beat on service.health")
    assert harness.broker.records("system-events") == []


async def test_no_beats_without_a_producer_or_an_interval(harness: Harness) -> None:
    quiet = await harness.start("leaves", enable_producer=False, heartbeat_interval_s=0.05)
    assert quiet.service.producer is None
    assert quiet.service._heartbeat is None
    off = await harness.start("audit", heartbeat_interval_s=0)
    assert off.service._heartbeat is None
    assert (await off.http.get("/ready")).status_code == 200
