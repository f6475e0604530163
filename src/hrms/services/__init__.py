"""The HRMS services. Each module has ``build(...) -> Service`` and a default port.

Services are built lazily by name (:func:`build`), so running one imports only its code.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from hrms.service.runtime import Service

PORTS: Final[dict[str, int]] = {
    "users": 8001,
    "employees": 8002,
    "leaves": 8003,
    "attendance": 8004,
    "compliance": 8005,
    "notifications": 8006,
    "audit": 8007,
    "inventory": 8008,
    "sales": 8009,
    "analytics": 8010,
}
"""Every service by name, with the port ``hrms up`` and ``hrms serve`` give it by default."""


def build(name: str, **kwargs: Any) -> Service:
    """Build service ``name`` (keyword arguments go to its module's ``build``).

    Raises:
        KeyError: no service has that name.
    """
    if name not in PORTS:
        raise KeyError(f"no service named {name!r}; choose one of {', '.join(PORTS)}")
    module = importlib.import_module(f"hrms.services.{name}")
    service: Service = module.build(**kwargs)
    return service
