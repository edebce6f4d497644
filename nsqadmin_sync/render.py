"""A small HTML template renderer that escapes everything by default.

Templates live in `nsqadmin_sync/templates/` (package data).  The syntax is
a tiny subset of Jinja's:

    {{ name.attr }}            the value, HTML-escaped (quotes too)
    {{ name | url }}           a filter, then escaped; filters: url (one path
                               segment), num (1,234), raw (no escaping: only
                               for markup built by the server itself)
    {% if expr %}..{% elif expr %}..{% else %}..{% endif %}
    {% for x in expr %}..{% else %}(empty)..{% endfor %}
    {% include "file.html" %}

`expr` is a dotted name, optionally preceded by `not`.  A dotted name looks
up dict keys, then attributes.  Nothing in a template can run code.
"""
from __future__ import annotations

import html
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import quote

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

_TOKEN = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)


class TemplateError(Exception):
    pass


class Markup(str):
    """Text that is already HTML (built by the server); inserted as is."""


def escape(value: Any) -> str:
    if isinstance(value, Markup):
        return value
    if type(value) is int:
        return str(value)
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and value != int(value):
        return "{:,.2f}".format(value)
    return "{:,}".format(int(value))


FILTERS: Dict[str, Callable[[Any], Any]] = {
    "url": lambda v: quote(str(v), safe=""),
    "num": _num,
    "raw": lambda v: Markup(v if v is not None else ""),
}


Expr = Tuple[bool, Tuple[str, ...]]  # (negated, dotted name parts)


def compile_expr(expr: str) -> Expr:
    expr = expr.strip()
    negate = expr.startswith("not ")
    if negate:
        expr = expr[4:].strip()
    return negate, tuple(expr.split("."))


def lookup(context: Dict[str, Any], expr: Union[str, Expr]) -> Any:
    """The value of a dotted name (dict keys, then attributes), `not` applied."""
    negate, parts = compile_expr(expr) if isinstance(expr, str) else expr
    value: Any = context.get(parts[0])
    for part in parts[1:]:
        if value is None:
            break
        if isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
    return (not value) if negate else value


Node = Union[str, Tuple]


def _parse(tokens: List[str], pos: int, ends: Tuple[str, ...]) -> Tuple[List[Node], int, str]:
    nodes: List[Node] = []
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok.startswith("{{") and tok.endswith("}}"):
            expr, *filters = [p.strip() for p in tok[2:-2].split("|")]
            for f in filters:
                if f not in FILTERS:
                    raise TemplateError("unknown filter %r" % f)
            nodes.append(("var", compile_expr(expr), tuple(FILTERS[f] for f in filters)))
        elif tok.startswith("{%") and tok.endswith("%}"):
            stmt = tok[2:-2].strip()
            word = stmt.split(" ", 1)[0]
            if word in ends:
                return nodes, pos, stmt
            if word == "if":
                branches = []
                cond = stmt[3:]
                while True:
                    body, pos, end = _parse(tokens, pos, ("elif", "else", "endif"))
                    branches.append((compile_expr(cond), body))
                    if end.startswith("elif"):
                        cond = end[5:]
                        continue
                    else_body: List[Node] = []
                    if end == "else":
                        else_body, pos, end = _parse(tokens, pos, ("endif",))
                    break
                nodes.append(("if", branches, else_body))
            elif word == "for":
                m = re.match(r"for\s+(\w+)\s+in\s+(.+)$", stmt)
                if not m:
                    raise TemplateError("bad for: %r" % stmt)
                body, pos, end = _parse(tokens, pos, ("else", "endfor"))
                empty: List[Node] = []
                if end == "else":
                    empty, pos, end = _parse(tokens, pos, ("endfor",))
                nodes.append(("for", m.group(1), compile_expr(m.group(2)), body, empty))
            elif word == "include":
                nodes.append(("include", stmt.split(" ", 1)[1].strip().strip("\"'")))
            else:
                raise TemplateError("unknown statement %r" % stmt)
        else:
            nodes.append(tok)
    if ends:
        raise TemplateError("missing %s" % " / ".join(ends))
    return nodes, pos, ""


class Renderer:
    """Loads, compiles (once) and renders the templates of one directory."""

    def __init__(self, directory: str = TEMPLATE_DIR) -> None:
        self.directory = directory
        self._cache: Dict[str, List[Node]] = {}
        self._lock = threading.Lock()

    def _compiled(self, name: str) -> List[Node]:
        with self._lock:
            nodes = self._cache.get(name)
        if nodes is None:
            if "/" in name or name.startswith("."):
                raise TemplateError("bad template name %r" % name)
            with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                tokens = [t for t in _TOKEN.split(f.read()) if t]
            nodes = _parse(tokens, 0, ())[0]
            with self._lock:
                self._cache[name] = nodes
        return nodes

    def render(self, name: str, context: Dict[str, Any]) -> str:
        out: List[str] = []
        self._run(self._compiled(name), dict(context), out)
        return "".join(out)

    def _run(self, nodes: List[Node], ctx: Dict[str, Any], out: List[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
                continue
            kind = node[0]
            if kind == "var":
                value = lookup(ctx, node[1])
                for f in node[2]:
                    value = f(value)
                out.append(escape(value))
            elif kind == "if":
                for cond, body in node[1]:
                    if lookup(ctx, cond):
                        self._run(body, ctx, out)
                        break
                else:
                    self._run(node[2], ctx, out)
            elif kind == "for":
                items = lookup(ctx, node[2]) or []
                if not items:
                    self._run(node[4], ctx, out)
                for item in items:
                    inner = dict(ctx)
                    inner[node[1]] = item
                    self._run(node[3], inner, out)
            elif kind == "include":
                self._run(self._compiled(node[1]), ctx, out)


_default: Optional[Renderer] = None


def default_renderer() -> Renderer:
    global _default
    if _default is None:
        _default = Renderer()
    return _default
