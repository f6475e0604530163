"""Bad input over real HTTP against the running system.

* A table of wrong requests to every service, each with the answer it must get: 422 with
  the offending field named, 404 for unknown ids, 409 for conflicts, 401 without a valid
  token, 403 for an employee on a manager/admin route, 404 for another tenant's records.
* A bounded schemathesis run against each service's ``/openapi.json`` (positive and
  negative cases, an admin token of a tenant of its own): no answer may be a 5xx.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from hrms.services import PORTS
from hrms.services.users import bootstrap_admin
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TENANT, SystemThread

pytestmark = pytest.mark.broker

OTHER_TENANT = "e2e-other"
FUZZ_TENANT = "e2e-fuzz"
PASSWORD = "bad-input-password"
MISSING = 987_654_321
"""An id no record has."""
HUGE = 2**64
"""An id past what any database's integer column holds."""
FUZZ_EXAMPLES = int(os.environ.get("HRMS_FUZZ_EXAMPLES", "12"))
"""Generated cases per operation (positive and negative); more with ``HRMS_FUZZ_EXAMPLES``."""
FUZZ_SKIP = {("POST", "/auth/logout")}
"""Operations the fuzzer leaves alone: logging out would revoke its token."""


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """Who calls (tokens by name) and what exists (ids by name) in the shared system."""

    client: httpx.Client
    urls: dict[str, str]
    run: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def call(
        self,
        service: str,
        method: str,
        path: str,
        who: str | None = "admin",
        *,
        expect: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        headers.update(kwargs.pop("headers", {}))
        url = self.urls[service] + path.format(run=self.run, **self.ids)
        r = self.client.request(method, url, headers=headers, **kwargs)
        if expect is not None:
            assert r.status_code == expect, f"{method} {service}{path}: {r.status_code} {r.text}"
        return r

    def login(self, tenant: str, email: str, password: str) -> str:
        body = {"tenant_id": tenant, "email": email, "password": password}
        r = self.call("users", "POST", "/auth/login", None, json=body, expect=200)
        token: str = r.json()["access_token"]
        return token


def _until(check: Callable[[], Any], what: str, wait_s: float = 45.0) -> Any:
    deadline = time.monotonic() + wait_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


@pytest.fixture(scope="module")
def world(system: SystemThread) -> Iterator[World]:
    """In the e2e tenant: a boss and a worker (with an employee account), an approved leave
    of the worker today, the worker checked in during it (so compliance records a
    violation, which is then resolved), a pending leave in the far future. A second
    tenant with an admin of its own."""
    run = uuid.uuid4().hex[:6]
    today = date.today()
    with httpx.Client(timeout=20) as client:
        w = World(client, {name: system.url(name) for name in system.system.running}, run)
        w.tokens["admin"] = w.login(TENANT, ADMIN_EMAIL, ADMIN_PASSWORD)
        w.ids["admin_user"] = w.call("users", "GET", "/auth/me", expect=200).json()["id"]
        for name in ("boss", "worker"):
            body = {
                "employee_code": f"BI-{name}-{run}",
                "name": name.title(),
                "email": f"{name}-{run}@{TENANT}.example",
                "hire_date": str(today - timedelta(days=100)),
            }
            r = w.call("employees", "POST", "/employees", json=body, expect=201)
            w.ids[name] = r.json()["id"]
        body = {
            "email": f"worker-{run}@{TENANT}.example",
            "name": "Worker",
            "password": PASSWORD,
            "role": "employee",
            "employee_id": w.ids["worker"],
        }
        r = w.call("users", "POST", "/users", json=body, expect=201)
        w.ids["worker_user"] = r.json()["id"]
        w.tokens["employee"] = w.login(TENANT, body["email"], PASSWORD)

        leave = {"employee_id": w.ids["worker"], "leave_type": "unpaid"}
        today_only = {**leave, "start_date": str(today), "end_date": str(today)}
        r = w.call("leaves", "POST", "/leaves", json=today_only, expect=201)
        w.ids["leave"] = r.json()["id"]
        w.call("leaves", "POST", "/leaves/{leave}/approve", expect=200)
        future = {**leave, "start_date": "2031-03-01", "end_date": "2031-03-10"}
        r = w.call("leaves", "POST", "/leaves", json=future, expect=201)
        w.ids["future_leave"] = r.json()["id"]
        punch = {"employee_id": w.ids["worker"]}
        r = w.call("attendance", "POST", "/attendance/check-in", json=punch, expect=201)
        w.ids["attendance"] = r.json()["id"]

        def finding() -> int | None:
            r = w.call("compliance", "GET", "/compliance/findings?employee_id={worker}")
            items = r.json()["items"] if r.status_code == 200 else []
            return next((f["id"] for f in items if f["rule"] == "check_in_during_leave"), None)

        w.ids["finding"] = _until(finding, "the check-in-during-leave finding")
        w.call("compliance", "POST", "/compliance/findings/{finding}/resolve", expect=200)

        product = {"sku": f"BI-{run}", "name": "Widget", "quantity_on_hand": 10}
        r = w.call("inventory", "POST", "/products", json=product, expect=201)
        w.ids["product"] = r.json()["id"]
        order = {"product_id": w.ids["product"], "quantity": 1, "customer": "Acme"}

        def ordered() -> int | None:  # once sales has heard of the product
            r = w.call("sales", "POST", "/orders", json=order)
            return int(r.json()["id"]) if r.status_code == 201 else None

        w.ids["order"] = _until(ordered, "sales to know the product")
        w.ids["cancelled_order"] = _until(ordered, "a second order")
        w.call("sales", "POST", "/orders/{cancelled_order}/cancel", expect=200)

        other_admin = f"admin@{OTHER_TENANT}.example"
        system.call(
            bootstrap_admin(system.system.running["users"], OTHER_TENANT, other_admin, PASSWORD)
        )
        w.tokens["other"] = w.login(OTHER_TENANT, other_admin, PASSWORD)
        yield w
        w.call("attendance", "POST", "/attendance/check-out", json=punch, expect=200)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Bad:
    """A wrong request and the answer it must get (``fields``: named in the 422 detail)."""

    service: str
    method: str
    path: str
    status: int
    who: str | None = "admin"
    json: Any = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.status}-{self.who}-{self.method}-{self.service}{self.path}"


LISTS = (
    ("users", "/users"),
    ("employees", "/employees"),
    ("leaves", "/leaves"),
    ("attendance", "/attendance"),
    ("compliance", "/compliance/findings"),
    ("notifications", "/notifications"),
    ("audit", "/audit-logs"),
    ("inventory", "/products"),
    ("sales", "/orders"),
)
"""Every service's list of records (admins see them all)."""

NEW_USER = {"email": "someone@e2e.example", "name": "Someone", "password": PASSWORD}

CASES = [
    # -- 422: the offending field is named (pydantic's loc, or the rule's message)
    Bad("users", "POST", "/users", 422, json={**NEW_USER, "email": "nope", "password": "short"},
        fields=("email", "password")),
    Bad("users", "POST", "/users", 422, json={**NEW_USER, "role": "owner", "extra": 1},
        fields=("role", "extra")),
    Bad("users", "POST", "/auth/login", 422, None, json={"email": "a@b.example", "password": "x"},
        fields=("tenant_id",)),
    Bad("users", "GET", "/users/abc", 422, fields=("user_id",)),
    Bad("users", "GET", "/users?limit=0", 422, fields=("limit",)),
    Bad("users", "POST", "/users/{worker_user}/password", 422, json={"new_password": "short"},
        fields=("new_password",)),
    Bad("employees", "POST", "/employees", 422,
        json={"employee_code": "bad code!", "name": "X", "email": "x@y.example"},
        fields=("employee_code", "hire_date")),
    Bad("employees", "PATCH", "/employees/{boss}", 422, json={"email": "nope"}, fields=("email",)),
    Bad("employees", "PATCH", "/employees/{boss}", 422, json={"name": None}, fields=("name",)),
    Bad("employees", "POST", "/employees/{boss}/status", 422, json={"status": "retired"},
        fields=("status",)),
    Bad("employees", "GET", "/employees?status=gone", 422, fields=("status",)),
    Bad("leaves", "POST", "/leaves", 422,
        json={"employee_id": 1, "leave_type": "holiday", "start_date": "2031-13-01",
              "end_date": "2031-01-02"},
        fields=("leave_type", "start_date")),
    Bad("leaves", "POST", "/leaves", 422,
        json={"employee_id": 1, "leave_type": "unpaid", "start_date": "2031-01-05",
              "end_date": "2031-01-02"},
        fields=("end_date",)),
    Bad("leaves", "GET", "/leaves/balance/{worker}?year=10", 422, fields=("year",)),
    Bad("attendance", "POST", "/attendance", 422,
        json={"employee_id": 1, "check_in": "2031-01-01T09:00:00"}, fields=("check_in",)),
    Bad("attendance", "POST", "/attendance", 422,
        json={"employee_id": 1, "check_in": "2031-01-01T09:00:00Z",
              "check_out": "2031-01-01T08:00:00Z"},
        fields=("check_out",)),
    Bad("attendance", "GET", "/attendance?date_from=yesterday", 422, fields=("date_from",)),
    Bad("compliance", "GET", "/compliance/findings/0", 422, fields=("finding_id",)),
    Bad("compliance", "GET", "/compliance/findings?status=closed", 422, fields=("status",)),
    Bad("notifications", "POST", "/notifications", 422, json={"subject": "hi"},
        fields=("recipient_email", "template_name")),
    Bad("notifications", "GET", "/notifications?limit=1000", 422, fields=("limit",)),
    Bad("audit", "POST", "/audit-logs", 422, json={"event_type": "audit.x"}, fields=("data",)),
    Bad("audit", "GET", "/audit-logs?from=notadate", 422, fields=("from",)),
    Bad("inventory", "POST", "/products", 422, json={"sku": "bad sku!", "name": "X",
                                                      "unit_price": -1},
        fields=("sku", "unit_price")),
    Bad("inventory", "PATCH", "/products/{product}", 422, json={"quantity_on_hand": 0},
        fields=("quantity_on_hand",)),
    Bad("inventory", "POST", "/products/{product}/adjustments", 422, json={"delta": 0},
        fields=("delta", "reason")),
    Bad("sales", "POST", "/orders", 422, json={"product_id": "{product}", "quantity": 0},
        fields=("quantity", "customer")),
    Bad("sales", "GET", "/orders?status=lost", 422, fields=("status",)),
    # -- 422: ids past what an Integer column holds (the fuzzer found these were 500s)
    Bad("users", "GET", f"/users/{HUGE}", 422, fields=("user_id",)),
    Bad("users", "POST", f"/users/{HUGE}/password", 422, json={"new_password": PASSWORD},
        fields=("user_id",)),
    Bad("users", "POST", "/users", 422, json={**NEW_USER, "employee_id": HUGE},
        fields=("employee_id",)),
    Bad("employees", "GET", f"/employees/{HUGE}", 422, fields=("employee_id",)),
    Bad("employees", "POST", "/employees", 422,
        json={"employee_code": "X", "name": "X", "email": "x@y.example",
              "hire_date": "2020-01-01", "user_id": HUGE, "manager_id": HUGE},
        fields=("user_id", "manager_id")),
    Bad("leaves", "GET", f"/leaves/{HUGE}", 422, fields=("leave_id",)),
    Bad("leaves", "GET", f"/leaves?employee_id={HUGE}", 422, fields=("employee_id",)),
    Bad("leaves", "GET", f"/leaves/balance/{HUGE}", 422, fields=("employee_id",)),
    Bad("attendance", "DELETE", f"/attendance/{HUGE}", 422, fields=("attendance_id",)),
    Bad("attendance", "POST", "/attendance/check-in", 422, json={"employee_id": HUGE},
        fields=("employee_id",)),
    Bad("compliance", "GET", f"/compliance/findings/{HUGE}", 422, fields=("finding_id",)),
    Bad("inventory", "GET", f"/products/{HUGE}", 422, fields=("product_id",)),
    Bad("sales", "GET", f"/orders/{HUGE}", 422, fields=("order_id",)),
    *(Bad(s, "GET", f"{p}?offset={HUGE}", 422, fields=("offset",)) for s, p in LISTS),
    # -- 422: an address with a control character, which SMTP refuses to write: was a 500
    *(Bad("notifications", "POST", "/notifications", 422, json={
        "recipient_email": address, "subject": "s", "template_name": "employee_welcome",
        "template_data": {"name": "X"}}, fields=("recipient",))
      for address in ("a\x01b@e2e.example", "ab@e2e\x7f.example")),
    # -- 404: unknown ids (and unknown routes)
    Bad("users", "GET", f"/users/{MISSING}", 404),
    Bad("users", "PATCH", f"/users/{MISSING}", 404, json={"name": "X"}),
    Bad("users", "DELETE", f"/users/{MISSING}", 404),
    Bad("employees", "GET", f"/employees/{MISSING}", 404),
    Bad("employees", "POST", f"/employees/{MISSING}/terminate", 404),
    Bad("leaves", "GET", f"/leaves/{MISSING}", 404),
    Bad("leaves", "POST", f"/leaves/{MISSING}/approve", 404),
    Bad("attendance", "GET", f"/attendance/{MISSING}", 404),
    Bad("attendance", "DELETE", f"/attendance/{MISSING}", 404),
    Bad("compliance", "GET", f"/compliance/findings/{MISSING}", 404),
    Bad("compliance", "POST", f"/compliance/findings/{MISSING}/resolve", 404),
    Bad("notifications", "GET", f"/notifications/{MISSING}", 404),
    Bad("audit", "GET", f"/audit-logs/{MISSING}", 404),
    Bad("inventory", "GET", f"/products/{MISSING}", 404),
    Bad("inventory", "POST", f"/products/{MISSING}/adjustments", 404,
        json={"delta": 1, "reason": "found one"}),
    Bad("sales", "GET", f"/orders/{MISSING}", 404),
    Bad("sales", "POST", "/orders", 404,
        json={"product_id": MISSING, "quantity": 1, "customer": "Acme"}),
    Bad("sales", "GET", f"/alerts/{MISSING}", 404),
    # -- 409: conflicts with what exists
    Bad("users", "POST", "/users", 409, json={**NEW_USER, "email": ADMIN_EMAIL.upper()}),
    Bad("users", "POST", "/users", 409,
        json={**NEW_USER, "email": "twin@e2e.example", "employee_id": "{worker}"}),
    Bad("users", "DELETE", "/users/{admin_user}", 409),  # the tenant's last admin
    Bad("users", "POST", "/users/{admin_user}/suspend", 409),
    Bad("users", "POST", "/users/{worker_user}/activate", 409),  # already active
    Bad("employees", "POST", "/employees", 409,
        json={"employee_code": "BI-boss-{run}", "name": "B", "email": "b@e2e.example",
              "hire_date": "2020-01-01"}),
    Bad("employees", "POST", "/employees/{boss}/status", 409, json={"status": "active"}),
    Bad("leaves", "POST", "/leaves", 409,
        json={"employee_id": "{worker}", "leave_type": "unpaid", "start_date": "2031-03-10",
              "end_date": "2031-03-12"}),
    Bad("leaves", "POST", "/leaves/{leave}/approve", 409),  # approved already
    Bad("attendance", "POST", "/attendance/check-in", 409, json={"employee_id": "{worker}"}),
    Bad("attendance", "POST", "/attendance/check-out", 409, json={"employee_id": MISSING}),
    Bad("compliance", "POST", "/compliance/findings/{finding}/resolve", 409),
    Bad("inventory", "POST", "/products", 409, json={"sku": "BI-{run}", "name": "Twin"}),
    Bad("sales", "POST", "/orders/{cancelled_order}/cancel", 409),
    # -- 401: no token, a forged one, or one logged out (on the users service)
    *(Bad(s, "GET", p, 401, None) for s, p in (*LISTS, ("users", "/auth/me"))),
    *(Bad(s, "GET", p, 401, "forged") for s, p in (
        ("users", "/auth/me"), ("employees", "/employees"), ("audit", "/audit-logs"),
    )),
    Bad("users", "GET", "/auth/me", 401, "logged_out"),
    # -- 403: an employee on manager/admin routes, or on someone else's records
    *(Bad(s, m, p, 403, "employee", json=j) for s, m, p, j in (
        ("users", "POST", "/users", NEW_USER),
        ("users", "GET", "/users", None),
        ("users", "POST", "/users/{admin_user}/suspend", None),
        ("users", "PATCH", "/users/{worker_user}", {"role": "admin"}),
        ("employees", "POST", "/employees", {"employee_code": "X", "name": "X",
                                              "email": "x@y.example", "hire_date": "2020-01-01"}),
        ("employees", "GET", "/employees", None),
        ("employees", "GET", "/employees/{boss}", None),
        ("leaves", "POST", "/leaves/{future_leave}/approve", None),
        ("leaves", "POST", "/leaves", {"employee_id": "{boss}", "leave_type": "sick",
                                       "start_date": "2031-01-01", "end_date": "2031-01-01"}),
        ("leaves", "GET", "/leaves/balance/{boss}", None),
        ("attendance", "POST", "/attendance", {"employee_id": "{worker}",
                                               "check_in": "2031-01-01T09:00:00Z"}),
        ("attendance", "POST", "/attendance/check-in", {"employee_id": "{boss}"}),
        ("compliance", "GET", "/compliance/findings", None),
        ("compliance", "POST", "/compliance/checks", None),
        ("notifications", "GET", "/notifications", None),
        ("audit", "GET", "/audit-logs", None),
        ("audit", "GET", "/audit-logs/verify", None),
        ("inventory", "POST", "/products", {"sku": "X", "name": "X"}),
        ("inventory", "POST", "/products/{product}/adjustments", {"delta": -1, "reason": "x"}),
        ("sales", "POST", "/orders/{order}/fulfil", None),
    )),
    Bad("audit", "GET", f"/audit-logs?tenant={TENANT}", 403, "other"),
    Bad("notifications", "POST", "/notifications", 403, "other",
        json={"tenant_id": TENANT, "recipient_email": "x@y.example", "subject": "s",
              "template_name": "employee_welcome"}),
    # -- another tenant's records are not there (404), for reading and for writing
    *(Bad(s, m, p, 404, "other", json=j) for s, m, p, j in (
        ("users", "GET", "/users/{worker_user}", None),
        ("users", "PATCH", "/users/{worker_user}", {"name": "Mallory"}),
        ("users", "POST", "/users/{worker_user}/suspend", None),
        ("employees", "GET", "/employees/{worker}", None),
        ("employees", "PATCH", "/employees/{worker}", {"name": "Mallory"}),
        ("employees", "POST", "/employees/{worker}/terminate", None),
        ("leaves", "GET", "/leaves/{leave}", None),
        ("leaves", "POST", "/leaves/{future_leave}/cancel", None),
        ("attendance", "GET", "/attendance/{attendance}", None),
        ("attendance", "PATCH", "/attendance/{attendance}", {"notes": "Mallory was here"}),
        ("attendance", "DELETE", "/attendance/{attendance}", None),
        ("compliance", "GET", "/compliance/findings/{finding}", None),
        ("compliance", "POST", "/compliance/findings/{finding}/resolve", None),
        ("inventory", "GET", "/products/{product}", None),
        ("inventory", "PATCH", "/products/{product}", {"name": "Mallory"}),
        ("inventory", "POST", "/products/{product}/adjustments", {"delta": -9, "reason": "x"}),
        ("sales", "GET", "/orders/{order}", None),
        ("sales", "POST", "/orders/{order}/cancel", None),
        ("sales", "GET", "/products/{product}", None),
        ("sales", "POST", "/orders", {"product_id": "{product}", "quantity": 1,
                                      "customer": "Mallory"}),
    )),
]  # fmt: skip


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """``value`` with ``"{name}"`` strings replaced by the world's ids (ints stay ints)."""
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value.format(**ids) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def callers(world: World) -> World:
    """The world, plus a forged token and one that has been logged out."""
    claims = {"sub": str(world.ids["admin_user"]), "tid": TENANT, "role": "admin",
              "exp": int(time.time()) + 600}  # fmt: skip
    world.tokens["forged"] = jwt.encode(claims, "not-the-secret-" + "y" * 40, algorithm="HS256")
    world.tokens["logged_out"] = world.login(TENANT, ADMIN_EMAIL, ADMIN_PASSWORD)
    world.call("users", "POST", "/auth/logout", "logged_out", expect=204)
    return world


@pytest.mark.parametrize("bad", CASES, ids=str)
def test_bad_request_gets_the_right_answer(callers: World, bad: Bad) -> None:
    w = callers
    kwargs = {} if bad.json is None else {"json": _fill(bad.json, {**w.ids, "run": w.run})}
    r = w.call(bad.service, bad.method, bad.path, bad.who, **kwargs)
    assert r.status_code == bad.status, r.text
    detail = r.json()["detail"]
    assert detail, r.text
    for name in bad.fields:
        if isinstance(detail, list):  # request validation: each error's loc names its field
            assert any(name in e["loc"] for e in detail), (name, detail)
            assert all(e["msg"] for e in detail), detail
        else:  # a business rule: the message names the field
            assert name in detail, (name, detail)
    if bad.status == 401:
        assert r.headers.get("www-authenticate", "Bearer").startswith("Bearer")


def test_nothing_of_another_tenant_is_listed(callers: World) -> None:
    """The second tenant's lists hold only its own records (none of the e2e tenant's)."""
    for service, path in LISTS:
        body = callers.call(service, "GET", path, "other", expect=200).json()
        assert {i["tenant_id"] for i in body["items"]} <= {OTHER_TENANT}, (service, body)
    # and the e2e tenant's records are still there, untouched by the 404s above
    worker = callers.call("employees", "GET", "/employees/{worker}", expect=200).json()
    assert worker["name"] == "Worker"
    record = callers.call("attendance", "GET", "/attendance/{attendance}", expect=200).json()
    assert record["notes"] is None
    product = callers.call("inventory", "GET", "/products/{product}", expect=200).json()
    assert (product["name"], product["quantity_on_hand"]) == ("Widget", 10)
    assert callers.call("sales", "GET", "/orders/{order}", expect=200).json()["status"] == (
        "pending"
    )


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_token(system: SystemThread) -> str:
    """An admin token of a tenant of the fuzzer's own."""
    email = f"admin@{FUZZ_TENANT}.example"
    system.call(bootstrap_admin(system.system.running["users"], FUZZ_TENANT, email, PASSWORD))
    body = {"tenant_id": FUZZ_TENANT, "email": email, "password": PASSWORD}
    r = httpx.post(system.url("users") + "/auth/login", json=body, timeout=20)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


@pytest.mark.timeout(150)
@pytest.mark.filterwarnings(  # schemathesis's negative strategies draw from `random`
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("service", list(PORTS))
def test_fuzzing_finds_no_server_error(system: SystemThread, fuzz_token: str, service: str) -> None:
    base = system.url(service)
    auth = {"Authorization": f"Bearer {fuzz_token}"}
    schema = schemathesis.openapi.from_url(base + "/openapi.json", timeout=20)
    failures: list[str] = []
    calls = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            op = result.ok()
            if (op.method.upper(), op.path) in FUZZ_SKIP:
                continue
            strategy = st.one_of(
                op.as_strategy(GenerationMode.POSITIVE, headers=auth),
                op.as_strategy(GenerationMode.NEGATIVE, headers=auth),
            )

            @given(case=strategy)
            @settings(
                max_examples=FUZZ_EXAMPLES,
                derandomize=True,  # the same cases every run: a failure reproduces
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def probe(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.headers = {**(case.headers or {}), **auth}
                response = case.call(base_url=base, session=session, headers=auth, timeout=20)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.operation.label}: {response.status_code} {response.text[:300]}\n"
                        f"    {case.as_curl_command(headers=auth, base_url=base)}"
                    )

            probe()
    assert calls > 0
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)
