"""Go-style command lines for every nsq-sync command.

NSQ's tools use Go's `flag` package, and their docs, deploy scripts and client
test harnesses write flags that way: `-tcp-address=X`, `-tcp-address X`,
`--tcp-address=X`, `--tcp-address X`, bare booleans (`-snappy`) and
`--snappy=false`.  Each command here declares its flags once as a list of
`Flag` records; from that one list come

* the click command (`make_command`), with argv rewritten from Go's forms
  into click's (`normalize_argv`),
* values merged as command line > config file (TOML) > default
  (`resolve`), each parsed and validated once, and
* the man page's OPTIONS section, which `tests/unit/test_man_pages.py`
  checks against the same list.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

# durations live in .durations; re-exported here for the flag layer's callers
from .durations import format_duration, format_duration_ns, parse_duration  # noqa: E402,F401

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("invalid boolean %r" % text)


# ---------------------------------------------------------------- flag records

KINDS = ("str", "int", "float", "bool", "duration", "strlist", "floatlist")


@dataclass
class Flag:
    """One command-line flag, as NSQ names and documents it."""

    name: str
    kind: str
    default: Any
    help: str
    cfg: Optional[str] = None  # key in the TOML config file (default: name with _)
    metavar: Optional[str] = None
    deprecated: Optional[str] = None  # warning printed when it is used
    alias_of: Optional[str] = None  # deprecated spelling of another flag
    choices: Optional[Sequence[str]] = None
    extra_bool_values: Sequence[str] = ()  # e.g. tls-required accepts "tcp-https"
    validate: Optional[Callable[[Any], Optional[str]]] = None  # returns an error text
    default_text: Optional[str] = None  # how help/man show the default

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        if self.cfg is None:
            self.cfg = self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def multiple(self) -> bool:
        return self.kind in ("strlist", "floatlist")

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        d = self.default
        if self.kind == "duration":
            return format_duration(d)
        if self.kind == "bool":
            return "true" if d else "false"
        if self.multiple:
            return ",".join(str(x) for x in d) if d else ""
        if d is None:
            return ""
        return str(d)

    def convert(self, raw: Any, source: str) -> Any:
        """Parse one raw value (text from argv, or a TOML value) into the flag's type."""
        try:
            value = self._convert(raw)
        except (TypeError, ValueError) as e:
            raise FlagError("invalid value %r for %s: %s" % (raw, source, e)) from None
        if self.choices is not None and value not in self.choices:
            raise FlagError("invalid value %r for %s: must be one of %s"
                            % (raw, source, ", ".join(self.choices)))
        if self.validate is not None:
            problem = self.validate(value)
            if problem:
                raise FlagError("invalid value %r for %s: %s" % (raw, source, problem))
        return value

    def _convert(self, raw: Any) -> Any:
        kind = self.kind
        if kind == "str":
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return raw
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            if isinstance(raw, int):
                return raw
            return int(str(raw).strip(), 0)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw) in self.extra_bool_values:
                return str(raw)
            return parse_bool(str(raw))
        if kind == "duration":
            if isinstance(raw, bool):
                raise ValueError("expected a duration")
            if isinstance(raw, (int, float)):
                return float(raw) / 1000.0  # NSQ config files give integer durations in ms
            return parse_duration(str(raw))
        if kind == "strlist":
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            return [str(x) for x in items if str(x) != ""]
        if kind == "floatlist":
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            out: List[float] = []
            for item in items:
                for part in str(item).split(","):
                    if part.strip():
                        out.append(float(part))
            return out
        raise ValueError("unknown kind %s" % kind)


class FlagError(Exception):
    """A bad command line or config file: reported in one line, exit code 2."""


# ---------------------------------------------------------------- shared validators
# (each returns None when the value is fine, else the reason, for Flag.validate)

def non_negative(value: float) -> Optional[str]:
    return "must not be negative" if value < 0 else None


def positive(value: float) -> Optional[str]:
    return "must be greater than 0" if value <= 0 else None


def check_log_level(value: str) -> Optional[str]:
    from .logs import parse_level

    try:
        parse_level(value)
    except ValueError as e:
        return str(e)
    return None


# ---------------------------------------------------------------- argv rewriting

def normalize_argv(argv: Sequence[str], flags: Sequence[Flag]) -> List[str]:
    """Rewrite Go flag forms into the `--name=value` / `--name value` forms click parses.

    Booleans always become `--name=<value>` (a bare `-snappy` is `--snappy=true`),
    so a boolean never swallows the next argument, as in Go.
    """
    by_name = {f.name: f for f in flags}
    out: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            out.extend(argv[i - 1:])
            break
        if not arg.startswith("-") or arg == "-" or arg.startswith("---"):
            out.append(arg)
            continue
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, value = body.partition("=")
        if name in ("h", "help"):
            out.append("--help")
            continue
        spec = by_name.get(name)
        if spec is None:
            out.append("--" + body)
            continue
        if spec.is_bool:
            out.append("--%s=%s" % (name, value if eq else "true"))
        elif eq:
            out.append("--%s=%s" % (name, value))
        else:
            out.append("--" + name)
    return out


# ---------------------------------------------------------------- config files

def load_config_file(path: str) -> Dict[str, Any]:
    """Read a TOML config file (NSQ's format)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise FlagError("cannot read config file %s: %s" % (path, e.strerror or e)) from None
    except tomllib.TOMLDecodeError as e:
        raise FlagError("cannot parse config file %s: %s" % (path, e)) from None


def resolve(flags: Sequence[Flag], cli_values: Dict[str, Any],
            config: Dict[str, Any], warn: Callable[[str], None]) -> Dict[str, Any]:
    """Merge command line > config file > defaults into {dest: parsed value}."""
    by_cfg = {f.cfg: f for f in flags}
    values: Dict[str, Any] = {}
    for key, raw in config.items():
        spec = by_cfg.get(key)
        if spec is None:
            warn("config file: unknown option %r ignored" % key)
            continue
        target = by_cfg.get(key)
        if spec.alias_of:
            target = next(f for f in flags if f.name == spec.alias_of)
        values[target.dest] = spec.convert(raw, "%s in config file" % key)
    for spec in flags:
        raw = cli_values.get(spec.dest)
        if raw is None or (spec.multiple and not raw):
            continue
        if spec.deprecated:
            warn(spec.deprecated)
        target = spec
        if spec.alias_of:
            target = next(f for f in flags if f.name == spec.alias_of)
        if spec.multiple:
            parsed: List[Any] = []
            for item in raw:
                parsed.extend(spec.convert(item, "--" + spec.name))
            values[target.dest] = parsed
        else:
            values[target.dest] = spec.convert(raw, "--" + spec.name)
    for spec in flags:
        if spec.alias_of:
            continue
        if spec.dest not in values:
            d = spec.default
            values[spec.dest] = list(d) if isinstance(d, list) else d
    return values


# ---------------------------------------------------------------- click glue

def click_options(flags: Sequence[Flag]) -> Callable[[Callable], Callable]:
    """Decorate a click command with one option per flag (values stay raw text)."""

    def decorate(fn: Callable) -> Callable:
        for spec in reversed(list(flags)):
            help_text = spec.help
            shown = spec.shown_default()
            if shown and spec.alias_of is None and spec.deprecated is None:
                help_text += " (default %s)" % shown
            if spec.deprecated:
                help_text = "[deprecated] " + help_text
            fn = click.option(
                "--" + spec.name,
                spec.dest,
                type=str,
                default=None,
                multiple=spec.multiple,
                metavar=spec.metavar or _metavar(spec),
                help=help_text,
            )(fn)
        return fn

    return decorate


def _metavar(spec: Flag) -> str:
    return {"str": "TEXT", "int": "INT", "float": "FLOAT", "bool": "BOOL",
            "duration": "DURATION", "strlist": "TEXT", "floatlist": "FLOAT"}[spec.kind]


def run_command(command: click.Command, prog: str, flags: Sequence[Flag],
                argv: Optional[Sequence[str]] = None) -> None:
    """Run a click command with Go-style argv; bad flags are one line on stderr, exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command.main(args=normalize_argv(args, flags), prog_name=prog, standalone_mode=False)
    except click.exceptions.NoSuchOption as e:
        _fail(prog, "flag provided but not defined: -%s" % e.option_name.lstrip("-"))
    except click.exceptions.BadOptionUsage as e:
        _fail(prog, _one_line(e.format_message()))
    except click.exceptions.UsageError as e:
        _fail(prog, _one_line(e.format_message()))
    except FlagError as e:
        _fail(prog, str(e))
    except click.exceptions.Abort:
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(prog: str, message: str) -> None:
    sys.stderr.write("%s: %s (see %s --help)\n" % (prog, message, prog))
    sys.stderr.flush()
    sys.exit(2)


def warn_stderr(prog: str) -> Callable[[str], None]:
    def warn(message: str) -> None:
        sys.stderr.write("%s: WARNING: %s\n" % (prog, message))

    return warn


def version_line(prog: str) -> str:
    """`nsqd v1.3.0-sync (built w/python3.11.7)`: the shape harnesses parse."""
    from . import __version__

    impl = sys.implementation.name  # "cpython" -> "python" like "go" for gc
    runtime = "python" if impl == "cpython" else impl
    v = sys.version_info
    return "%s v%s (built w/%s%d.%d.%d)" % (prog, __version__, runtime, v.major, v.minor, v.micro)


def default_hostname() -> str:
    import socket

    try:
        return socket.gethostname()
    except OSError:
        return "localhost"


# ---------------------------------------------------------------- man pages

def roff_options(flags: Sequence[Flag]) -> str:
    """The OPTIONS section of a man page, rendered from the flag list.

    Man pages keep this block between `.\\" BEGIN OPTIONS` and `.\\" END OPTIONS`
    markers; tests/unit/test_man_pages.py checks it matches the code.
    """
    lines = ['.\\" BEGIN OPTIONS (generated by nsqd_sync.flags.roff_options; keep in sync)']
    for spec in flags:
        meta = "" if spec.is_bool else " \\fI%s\\fR" % (spec.metavar or _metavar(spec))
        lines.append(".TP")
        lines.append("\\fB\\-\\-%s\\fR%s" % (spec.name.replace("-", "\\-"), meta))
        text = spec.help
        if spec.deprecated:
            text = "[deprecated] " + text
        lines.append(_roff_escape(text))
        shown = spec.shown_default()
        if spec.alias_of is None and spec.deprecated is None:
            lines.append(".br")
            lines.append("Default: %s" % (_roff_escape(shown) if shown != "" else "(empty)"))
        if spec.multiple:
            lines.append(".br")
            lines.append("May be given more than once.")
    lines.append('.\\" END OPTIONS')
    return "\n".join(lines) + "\n"


def _roff_escape(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    if out.startswith((".", "'")):
        out = "\\&" + out
    return out


def replace_roff_options(page: str, flags: Sequence[Flag]) -> str:
    """page with its generated OPTIONS block replaced by the current one."""
    begin = page.index('.\\" BEGIN OPTIONS')
    end = page.index('.\\" END OPTIONS')
    end = page.index("\n", end) + 1
    return page[:begin] + roff_options(flags) + page[end:]


def main_update_man(argv: Optional[Sequence[str]] = None) -> None:
    """`python -m nsqd_sync.flags MODULE:ATTR PAGE` rewrites PAGE's OPTIONS block."""
    import importlib

    args = list(sys.argv[1:] if argv is None else argv)
    module_name, _, attr = args[0].partition(":")
    flag_list = getattr(importlib.import_module(module_name), attr or "FLAGS")
    with open(args[1]) as f:
        page = f.read()
    with open(args[1], "w") as f:
        f.write(replace_roff_options(page, flag_list))


if __name__ == "__main__":  # pragma: no cover
    main_update_man()
