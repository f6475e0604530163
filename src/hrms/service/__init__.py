"""What every HRMS service shares: settings, database, auth, errors, the app factory.

Each service module (``hrms.services.<name>``) builds a :class:`Service` with its own
tables, routers and consumers; :func:`hrms.service.app.build_app` turns it into a FastAPI
app with the same lifespan, health, readiness, correlation ids and error shapes.
"""

from hrms.service.auth import Principal, Role, TokenIssuer
from hrms.service.errors import Conflict, Forbidden, NotFound, RuleBroken, ServiceError
from hrms.service.runtime import Service, ServiceContext
from hrms.service.settings import HrmsSettings

__all__ = [
    "Conflict",
    "Forbidden",
    "HrmsSettings",
    "NotFound",
    "Principal",
    "Role",
    "RuleBroken",
    "Service",
    "ServiceContext",
    "ServiceError",
    "TokenIssuer",
]
