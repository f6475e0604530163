"""E-mail bodies rendered from the package's Jinja2 templates.

A template ``<name>`` is ``templates/<name>.txt`` (the plain-text body, required) and,
optionally, ``templates/<name>.html`` (an HTML alternative, autoescaped). The subject
comes from the event, not the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)

from hrms.services.notifications._errors import PermanentDeliveryError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered body: plain text, and HTML when the template has an HTML part."""

    text: str
    html: str | None = None


class Templates:
    """Renders the notification templates shipped in ``hrms.services.notifications``."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("hrms.services.notifications", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            keep_trailing_newline=True,
        )

    def names(self) -> list[str]:
        """The names of the templates available (those with a ``.txt`` body)."""
        return sorted(n[:-4] for n in self.env.list_templates(extensions=["txt"]))

    def render(self, name: str, values: dict[str, Any]) -> Rendered:
        """Render template ``name`` with ``values``.

        Raises:
            PermanentDeliveryError: the template does not exist or cannot be rendered (the
                same event would fail the same way every time).
        """
        if not _NAME.match(name):
            raise PermanentDeliveryError(f"unknown template {name!r} (not a template name)")
        try:
            text = self.env.get_template(f"{name}.txt").render(values)
        except TemplateNotFound as exc:
            raise PermanentDeliveryError(f"unknown template {name!r}") from exc
        except TemplateError as exc:
            raise PermanentDeliveryError(f"template {name!r} failed to render: {exc}") from exc
        try:
            html = self.env.get_template(f"{name}.html").render(values)
        except TemplateNotFound:
            html = None
        except TemplateError as exc:
            raise PermanentDeliveryError(
                f"template {name!r} (html) failed to render: {exc}"
            ) from exc
        return Rendered(text, html)
