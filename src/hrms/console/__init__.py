"""The web console of a running system, served by the hub at ``/console``.

Pages: the broker overview (addresses, profile, topic and group counts, each service's
``/ready``), topics with every partition's earliest and end offsets, consumer groups with
their lag per partition (refreshed every 2 s), the dead-letter browser (filters, detail,
a Replay button that redrives a record to its original topic), a live tail with filters
(manual assignment: no consumer group), the event catalog from the AsyncAPI document, and
in development the mail the SMTP sink received.

The work is :mod:`eventbus.ops` and :mod:`eventbus.redrive`; this package only renders
it (Jinja2, autoescaped) and serves a small script and stylesheet from the package: no
CDN, nothing from the network. It is an operator's tool with no login of its own: it is
served on the hub's address, loopback by default.

Example::

    console = Console(kafka, services=lambda: {"users": "http://127.0.0.1:8001"})
    hub = FastAPI(lifespan=console.lifespan)
    hub.include_router(console.router(), prefix=PREFIX)
"""

from hrms.console._broker import ConsoleError
from hrms.console._console import PREFIX, Console

__all__ = ["PREFIX", "Console", "ConsoleError"]
