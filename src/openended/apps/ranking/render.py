"""Candidate text as HTML for the ranking page: code highlighted with Pygments (on the
server, so the page needs no front-end build), everything else escaped."""

from __future__ import annotations

import html
import re

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)(?:\n```|\Z)", re.DOTALL)
_FORMATTER = HtmlFormatter(cssclass="hl", nowrap=False)


def highlight_css() -> str:
    return _FORMATTER.get_style_defs(".hl")


def _code(text: str, language: str) -> str:
    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return highlight(text, lexer, _FORMATTER)


def render(text: str, language: str | None = None) -> str:
    """HTML for a candidate: all code when `language` is given, else prose with fenced
    code blocks (```python ... ```) highlighted."""
    if language:
        return _code(text, language)
    parts, position = [], 0
    for match in FENCE.finditer(text):
        parts.append(_prose(text[position : match.start()]))
        parts.append(_code(match.group(2), match.group(1)))
        position = match.end()
    parts.append(_prose(text[position:]))
    return "".join(p for p in parts if p)


def _prose(text: str) -> str:
    return f'<div class="prose">{html.escape(text)}</div>' if text.strip() else ""
