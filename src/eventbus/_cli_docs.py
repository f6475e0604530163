"""``eventbus docs``: write an AsyncAPI 3.0.0 document as JSON, YAML or an HTML page."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from eventbus._cli_common import console, fail
from eventbus.errors import EventBusError

_FORMATS = ("json", "yaml", "html")
_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".html": "html", ".htm": "html"}


def _format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        return _SUFFIXES.get(output.suffix.lower(), "json") if output is not None else "json"
    value = fmt.strip().lower()
    if value not in _FORMATS:
        raise fail(f"--format must be one of {', '.join(_FORMATS)}, not {fmt!r}", 2)
    return value


def _text(document: dict[str, Any], fmt: str) -> str:
    if fmt == "html":
        from eventbus.asyncapi import render_html

        return render_html(document)
    if fmt == "yaml":
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise fail(
                "YAML output needs PyYAML (pip install pyyaml); or use --format json"
            ) from exc
        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def docs(
    app: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="MODULE:ATTR of an AsyncAPI document, an EventRegistry, or a function "
            "returning either (e.g. hrms.asyncapi:system_document).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The file to write (default: stdout).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="json, yaml or html (default: from the file's suffix, else json)."
        ),
    ] = None,
) -> None:
    """Write the AsyncAPI 3.0.0 document of an application: JSON, YAML or an HTML page."""
    from eventbus.asyncapi import load_document

    if app is None:
        raise fail("--app MODULE:ATTR is required, e.g. --app hrms.asyncapi:system_document", 2)
    kind = _format(fmt, output)
    try:
        document = load_document(app)
    except EventBusError as exc:
        raise fail(str(exc)) from exc
    text = _text(document, kind)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from exc
    channels = len(document.get("channels") or {})
    messages = len((document.get("components") or {}).get("messages") or {})
    console.print(f"wrote {output} ({kind}): {channels} channels, {messages} messages")


def register_docs(app: typer.Typer) -> None:
    """Add ``docs`` to the ``eventbus`` app."""
    app.command("docs")(docs)
