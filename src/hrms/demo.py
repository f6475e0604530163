"""An end-to-end walk through the event backbone, printed as it happens.

It publishes the seeds' events (a welcome notification, audit records, an employee hire,
a leave request, a low-stock alert, a payroll run, a customer order, an uploaded document)
and one poison message, consumes them with typed handlers, a batch handler and routing by
event type, and shows where each one went.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rich.console import Console
from rich.table import Table

from eventbus import (
    KafkaConsumer,
    KafkaProducer,
    KafkaSettings,
    MessageContext,
    Record,
    RetryPolicy,
    ensure_topics,
)
from eventbus import headers as h
from eventbus._handlers import Handler
from hrms import topics
from hrms.events import (
    AuditEvent,
    CrmEvent,
    DocumentEvent,
    EmployeeEvent,
    EventType,
    LeaveEvent,
    LowStockEvent,
    NotificationEvent,
    PayrollEvent,
    create_audit_event,
    create_crm_event,
    create_document_event,
    create_employee_event,
    create_leave_event,
    create_low_stock_event,
    create_notification_event,
    create_payroll_event,
)


@dataclass
class DemoResult:
    """What the demo observed, for printing and for tests."""

    published: list[tuple[str, str, str]] = field(default_factory=list)
    handled: list[tuple[str, str, str]] = field(default_factory=list)
    audit_batches: list[int] = field(default_factory=list)
    dead_letters: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every published event was handled, and the poison message was dead-lettered."""
        return len(self.handled) == len(self.published) and len(self.dead_letters) == 1


def demo_events(corr: str, tenant: str) -> list[tuple[str, Any]]:
    """The seeds' events, one per domain, with their topics."""
    events: list[tuple[str, Any]] = [
        (
            topics.NOTIFICATION_TOPIC,
            create_notification_event(
                source_service="user-management-service",
                recipient_email="jane@example.com",
                recipient_name="Jane Doe",
                subject="Welcome to HRMS!",
                template_name="welcome_email",
                template_data={"name": "Jane"},
                event_type=EventType.USER_CREATED,
                user_id=42,
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
        (
            topics.EMPLOYEE_TOPIC,
            create_employee_event(
                source_service="employee-management-service",
                event_type=EventType.EMPLOYEE_CREATED,
                employee_id=7,
                name="Jane Doe",
                age=34,
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
        (
            topics.LEAVE_TOPIC,
            create_leave_event(
                source_service="leave-management-service",
                event_type=EventType.LEAVE_REQUESTED,
                leave_id=100,
                employee_id=7,
                leave_type="annual",
                start_date=date(2026, 12, 1),
                end_date=date(2026, 12, 5),
                status="pending",
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
        (
            topics.INVENTORY_TOPIC,
            create_low_stock_event(
                source_service="inventory-service",
                product_id="PRD-123",
                product_sku="LAP-001",
                product_name="Laptop Computer",
                current_stock=0,
                reorder_level=10,
                reorder_quantity=50,
                unit_price=1200.0,
                category="electronics",
                location="Warehouse A",
                tenant_id=tenant,
                correlation_id=corr,
            ),
        ),
    ]
    # Seed 002's payroll, CRM and document domains (no HRMS service produces them yet).
    events += [
        (
            topics.PAYROLL_TOPIC,
            create_payroll_event(
                source_service="payroll-service",
                event_type=EventType.PAYROLL_PROCESSED,
                payroll_id="PR-2026-11",
                period="2026-11",
                status="processed",
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
        (
            topics.CRM_TOPIC,
            create_crm_event(
                source_service="crm-service",
                event_type=EventType.ORDER_CREATED,
                customer_id="CUS-9",
                order_id="ORD-77",
                total_amount=2400.0,
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
        (
            topics.DOCUMENT_TOPIC,
            create_document_event(
                source_service="document-service",
                event_type=EventType.DOCUMENT_UPLOADED,
                document_id=12,
                employee_id=7,
                title="Employment contract",
                document_type="contract",
                correlation_id=corr,
                tenant_id=tenant,
            ),
        ),
    ]
    events += [
        (
            topics.AUDIT_TOPIC,
            create_audit_event(
                source_service="user-management-service",
                action=action,
                resource_type="user",
                user_id=1,
                resource_id=42,
                description=f"{action} user 42",
                correlation_id=corr,
                tenant_id=tenant,
            ),
        )
        for action in ("CREATE", "UPDATE", "LOGIN")
    ]
    return events


async def run_demo(  # noqa: PLR0915 - one linear walk-through reads best in one piece
    settings: KafkaSettings, console: Console | None = None, timeout_s: float = 60.0
) -> DemoResult:
    """Publish the demo events and consume them; return what happened."""
    out = console or Console()
    result = DemoResult()
    created = await ensure_topics(topics.topic_specs(replication_factor=1), settings=settings)
    out.print(f"[bold]topics[/]: {len(topics.TOPICS)} declared, {len(created)} created")
    run = uuid.uuid4().hex[:8]
    corr = f"demo-{run}"
    tenant = "acme"
    events = demo_events(corr, tenant)
    async with KafkaProducer(settings=settings) as producer:
        for topic, event in events:
            if not await producer.send_event(topic, event):
                raise RuntimeError(f"the broker did not acknowledge {event.event_type}")
            result.published.append((topic, event.event_type, str(event.event_id)))
        # A message nobody can decode: it must reach the dead-letter topic, not crash anyone.
        await producer.send_raw(topics.EMPLOYEE_TOPIC, b"{this is not json", key="7")
    _print_published(out, result)

    group = f"hrms-demo-{run}"
    done = asyncio.Event()

    def mark(event: Any, who: str) -> None:
        result.handled.append((who, event.event_type, str(event.event_id)))
        out.print(f"  [green]handled[/] {event.event_type:<22} by {who}")
        if len(result.handled) == len(result.published) and result.dead_letters:
            done.set()

    async def on_notification(event: NotificationEvent) -> None:
        mark(event, f"notification → {event.data.recipient_email}")

    async def on_audit_batch(batch: list[AuditEvent]) -> None:
        result.audit_batches.append(len(batch))
        for event in batch:
            mark(event, f"audit batch of {len(batch)}")

    async def on_dead_letter(record: Record, ctx: MessageContext) -> None:
        result.dead_letters.append((record.topic, ctx.header(h.DLQ_EXCEPTION_TYPE) or "?"))
        out.print(
            f"  [red]dead-lettered[/] from {ctx.header(h.DLQ_ORIGINAL_TOPIC)}: "
            f"{ctx.header(h.DLQ_EXCEPTION_MESSAGE)}"
        )
        if len(result.handled) == len(result.published):
            done.set()

    domain = KafkaConsumer(
        group_id=f"{group}-domain",
        settings=settings,
        topics=[
            topics.EMPLOYEE_TOPIC,
            topics.LEAVE_TOPIC,
            topics.INVENTORY_TOPIC,
            topics.PAYROLL_TOPIC,
            topics.CRM_TOPIC,
            topics.DOCUMENT_TOPIC,
        ],
        retry=RetryPolicy(attempts=2, initial_backoff_s=0.05),
    )

    @domain.on(EventType.EMPLOYEE_CREATED)
    async def on_hired(event: EmployeeEvent) -> None:
        mark(event, f"compliance (employee {event.data.employee_id})")

    @domain.on(EventType.LEAVE_REQUESTED)
    async def on_leave(event: LeaveEvent) -> None:
        mark(event, f"compliance (leave {event.data.leave_id})")

    @domain.on(EventType.INVENTORY_LOW_STOCK)
    async def on_low_stock(event: LowStockEvent) -> None:
        mark(event, f"sales (priority {event.priority.value})")

    @domain.on(EventType.PAYROLL_PROCESSED)
    async def on_payroll(event: PayrollEvent) -> None:
        mark(event, f"finance (payroll {event.data.payroll_id})")

    @domain.on(EventType.ORDER_CREATED)
    async def on_order(event: CrmEvent) -> None:
        mark(event, f"crm (order {event.data.order_id} of {event.data.customer_id})")

    @domain.on(EventType.DOCUMENT_UPLOADED)
    async def on_document(event: DocumentEvent) -> None:
        mark(event, f"hr (document {event.data.document_id} to review)")

    consumers: list[tuple[KafkaConsumer, Handler | None, bool]] = [
        (
            KafkaConsumer(
                group_id=f"{group}-notify", topics=[topics.NOTIFICATION_TOPIC], settings=settings
            ),
            on_notification,
            False,
        ),
        (
            KafkaConsumer(
                group_id=f"{group}-audit", topics=[topics.AUDIT_TOPIC], settings=settings
            ),
            on_audit_batch,
            True,
        ),
        (domain, None, False),
        (
            KafkaConsumer(group_id=f"{group}-dlq", topics=["employee-dlq"], settings=settings),
            on_dead_letter,
            False,
        ),
    ]
    out.print("[bold]consuming[/]")
    tasks = []
    try:
        for consumer, handler, batch in consumers:
            await consumer.start()
            if batch:
                assert handler is not None
                tasks.append(
                    asyncio.create_task(
                        consumer.consume_batch(handler, batch_size=500, max_wait=0.5)
                    )
                )
            else:
                tasks.append(asyncio.create_task(consumer.consume(handler)))
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        for consumer, _, _ in consumers:
            await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


def _print_published(out: Console, result: DemoResult) -> None:
    table = Table("topic", "event type", "event id", title="published (acknowledged)")
    for row in result.published:
        table.add_row(*row)
    out.print(table)
