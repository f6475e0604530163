"""The user-management service (seed 001's ``user-management-service``).

Accounts of each tenant (admin, manager, employee), argon2 password hashes, JWT login and
logout, and the first admin (:func:`bootstrap_admin`). Every write emits a ``user.*``
event on ``user-queue``, an audit record and, for new accounts and changed passwords, a
notification; with ``KAFKA_ENABLE_PRODUCER=false`` the audit records and notifications go
over HTTP instead (see :mod:`hrms.services.users.outbound`).

Endpoints: ``POST /users`` (admin), ``GET /users`` (admin, manager), ``GET /users/{id}``
(admin, manager, self), ``PATCH /users/{id}`` (admin; self: name only), ``DELETE
/users/{id}``, ``POST /users/{id}/suspend``, ``POST /users/{id}/activate`` (admin),
``POST /users/{id}/password`` (self with the current password, or admin), ``POST
/auth/login``, ``POST /auth/logout``, ``GET /auth/me``.
"""

from hrms.services.users.directory import Directory
from hrms.services.users.outbound import HttpFallback
from hrms.services.users.service import UsersService, bootstrap_admin, build

__all__ = ["Directory", "HttpFallback", "UsersService", "bootstrap_admin", "build"]
