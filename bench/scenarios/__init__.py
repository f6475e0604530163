"""The scenarios: every module here that defines ``SCENARIO`` is one.

Adding a scenario is adding a module with a :class:`bench.harness.Scenario` named
``SCENARIO``; its ``order`` places it in the default run.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.harness import Scenario


def discover() -> dict[str, Scenario]:
    """All scenarios by name, in run order."""
    found: list[Scenario] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found.append(scenario)
    return {s.name: s for s in sorted(found, key=lambda s: (s.order, s.name))}
