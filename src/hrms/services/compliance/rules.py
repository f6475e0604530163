"""The compliance rules, their thresholds and severities.

:class:`ComplianceRules` reads ``HRMS_COMPLIANCE_*`` environment variables, so a
deployment tunes the thresholds without code; tests pass their own instance to
:func:`hrms.services.compliance.build`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Clock = Callable[[], datetime]
"""Returns the current time (aware); injected so tests can move it."""

Severity = Literal["low", "medium", "high", "critical"]
"""How serious a finding is."""


class Rule(StrEnum):
    """The rules the compliance service enforces (the ``rule`` of each finding)."""

    MAX_WEEKLY_HOURS = "max_weekly_hours"
    MISSING_CHECK_OUT = "missing_check_out"
    CHECK_IN_DURING_LEAVE = "check_in_during_leave"
    ACTIVITY_AFTER_TERMINATION = "activity_after_termination"


class Kind(StrEnum):
    """A violation (a rule was broken) or an alert (something needs a look)."""

    VIOLATION = "violation"
    ALERT = "alert"


KIND: dict[Rule, Kind] = {
    Rule.MAX_WEEKLY_HOURS: Kind.VIOLATION,
    Rule.MISSING_CHECK_OUT: Kind.ALERT,
    Rule.CHECK_IN_DURING_LEAVE: Kind.VIOLATION,
    Rule.ACTIVITY_AFTER_TERMINATION: Kind.VIOLATION,
}
"""Whether each rule's findings are violations or alerts."""


class ComplianceRules(BaseSettings):
    """Thresholds and severities of the compliance rules (``HRMS_COMPLIANCE_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="HRMS_COMPLIANCE_", extra="ignore")

    max_weekly_hours: float = Field(default=48.0, gt=0)
    """More hours than this in one ISO week is a ``max_weekly_hours`` violation."""
    missing_check_out_hours: float = Field(default=16.0, gt=0)
    """A check-in without a check-out for longer than this is a ``missing_check_out`` alert."""
    check_interval_s: float = Field(default=300.0, gt=0)
    """How often the scheduled check for missing check-outs runs."""
    termination_ignored_events: tuple[str, ...] = (
        "leave.cancelled",
        "leave.rejected",
        "attendance.deleted",
    )
    """Event types that clean up after a termination and so are not "activity" by the
    terminated employee (the leaves service may cancel their pending requests)."""

    max_weekly_hours_severity: Severity = "high"
    missing_check_out_severity: Severity = "medium"
    check_in_during_leave_severity: Severity = "high"
    activity_after_termination_severity: Severity = "high"

    def severity(self, rule: Rule) -> Severity:
        """The severity of ``rule``'s findings."""
        severity: Severity = getattr(self, f"{rule.value}_severity")
        return severity


def iso_week(day: date) -> tuple[str, date, date]:
    """Return ``(label like "2025-W03", Monday, Sunday)`` of ``day``'s ISO week."""
    year, week, _ = day.isocalendar()
    monday = day - timedelta(days=day.weekday())
    return f"{year}-W{week:02d}", monday, monday + timedelta(days=6)
