"""Go-style command lines for every nsq-sync command.

NSQ's tools use Go's `flag` package, and their docs, deploy scripts and client
test harnesses write flags that way: `-tcp-address=X`, `-tcp-address X`,
`--tcp-address=X`, `--tcp-address X`, bare booleans (`-snappy`) and
`--snappy=false`.  Each command here declares its flags once as a list of
`Flag` records; from that one list come

* the click options (`click_options`), each with a click parameter type that
  parses and checks its value the way Go does: `GoDuration` (`1m30s`),
  `GoBool` (`strconv.ParseBool`), `GoInt` (an `IntRange` that also takes
  `0x10`), `FloatRange`, `Choice`, and `FloatList`; a flag's own `validate`
  check is part of its type (`Checked`), so click rejects a bad value while
  parsing.  argv is rewritten from Go's forms into click's first
  (`normalize_argv`: the only part that is really ours);
* the TOML config file (`--config`), read by that option's eager callback
  into click's `default_map`, so click itself merges command line > config
  file; `resolve` then fills the Go defaults, maps deprecated aliases and
  warns (it also merges a config dict given to it, for callers without a
  click context); and
* the man page's OPTIONS section (`roff_options`), which
  `tests/unit/test_man_pages.py` checks against the same list.

The interface the commands use: `Flag`, `click_options`, `load_config_file`,
`resolve`, `run_command`, `version_line`, `roff_options`, `FlagError`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import click

from .durations import format_duration, parse_duration

class FlagError(Exception):
    """A bad command line or config file: reported in one line, exit code 2."""


# ---------------------------------------------------------------- click parameter types

class BadValue(click.BadParameter, FlagError):
    """A value a flag cannot take; run_command prints it as Go's flag package does, in one line."""

    def __init__(self, value: Any, reason: str, ctx: Optional[click.Context] = None,
                 param: Optional[click.Parameter] = None) -> None:
        super().__init__(reason, ctx, param)
        self.value = value
        self.reason = reason

    def __str__(self) -> str:
        return self.line()

    def line(self, source: Optional[str] = None) -> str:
        if source is None:
            source = self.param.opts[0] if self.param is not None and self.param.opts else "flag"
        return "invalid value %r for %s: %s" % (self.value, source, self.reason)


class _GoType(click.ParamType):
    """A click type whose parse() raises ValueError/TypeError with the reason."""

    def parse(self, value: Any) -> Any:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        try:
            return self.parse(value)
        except (TypeError, ValueError) as e:
            raise BadValue(value, str(e), ctx, param) from None


class GoDuration(_GoType):
    """Go's time.ParseDuration text (`250ms`, `1m30s`) -> seconds; a number is already seconds."""

    name = "duration"

    def parse(self, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a duration")
        if isinstance(value, (int, float)):
            return float(value)
        return parse_duration(str(value))


class GoBool(_GoType):
    """Go's strconv.ParseBool (plus a flag's extra words, e.g. tls-required's `tcp-https`)."""

    name = "bool"

    def __init__(self, extra_values: Sequence[str] = ()) -> None:
        self.extra_values = tuple(extra_values)

    def parse(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if str(value) in self.extra_values:
            return str(value)
        return parse_bool(str(value))


class GoInt(click.IntRange):
    """An IntRange that parses as Go's flag package does (`0x10`, surrounding blanks)."""

    name = "integer"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, bool):
            raise BadValue(value, "expected an integer", ctx, param)
        number = value
        if not isinstance(value, int):
            try:
                number = int(str(value).strip(), 0)
            except ValueError as e:
                raise BadValue(value, str(e), ctx, param) from None
        return _in_range(self, super().convert, value, number, param, ctx)

    def _describe_range(self) -> str:
        return ""  # help shows NSQ's text and default only, as before


class GoFloat(click.FloatRange):
    """A FloatRange (Go's strconv.ParseFloat accepts what float() does)."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        return _in_range(self, super().convert, value, value, param, ctx)

    def _describe_range(self) -> str:
        return ""


class GoDurationRange(GoDuration):
    """GoDuration with a lower bound (the flags whose duration must be > 0 or >= 0)."""

    def __init__(self, range_type: click.FloatRange) -> None:
        self.range_type = range_type

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        seconds = super().convert(value, param, ctx)
        try:
            return self.range_type.convert(seconds, param, ctx)
        except click.BadParameter as e:
            raise BadValue(value, _range_reason(self.range_type, e), ctx, param) from None


class GoChoice(click.Choice):
    """click's Choice, reporting a bad value in the flag layer's one-line form."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if not isinstance(value, str):
            raise BadValue(value, "expected a string", ctx, param)
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise BadValue(value, "must be one of %s" % ", ".join(self.choices), ctx, param) from None


class Checked(click.ParamType):
    """A flag's click type plus its own check (`Flag.validate`), reported with the value as given."""

    def __init__(self, base: click.ParamType, validate: Callable[[Any], Optional[str]]) -> None:
        self.base = base
        self.validate = validate
        self.name = base.name

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        parsed = self.base.convert(value, param, ctx)
        problem = self.validate(parsed)
        if problem:
            raise BadValue(value, problem, ctx, param)
        return parsed


class FloatList(_GoType):
    """Comma-separated floats (`0.99,0.95`); a list stays a list."""

    name = "float list"

    def parse(self, value: Any) -> List[float]:
        items = value if isinstance(value, (list, tuple)) else [value]
        out: List[float] = []
        for item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(float(item))
                continue
            for part in str(item).split(","):
                if part.strip():
                    out.append(float(part))
        return out


def _range_reason(range_type: Any, error: click.BadParameter) -> str:
    if range_type.min == 0 and range_type.max is None:
        return "must be greater than 0" if range_type.min_open else "must not be negative"
    return error.message


def _in_range(range_type: Any, convert: Callable[..., Any], value: Any, number: Any, param: Any,
              ctx: Any) -> Any:
    """convert(number) with click's range check; a failure names the value as given."""
    try:
        return convert(number, param, ctx)
    except BadValue:
        raise
    except click.BadParameter as e:
        raise BadValue(value, _range_reason(range_type, e), ctx, param) from None


_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("invalid boolean %r" % text)


# ---------------------------------------------------------------- shared validators
# (each returns None when the value is fine, else the reason, for Flag.validate;
# on a number flag, non_negative and positive become the click range itself)

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


# ---------------------------------------------------------------- flag records

KINDS = ("str", "int", "float", "bool", "duration", "strlist", "floatlist")
_NUMBER_KINDS = ("int", "float", "duration")


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
    min: Optional[float] = None  # a number flag's range (click IntRange / FloatRange)
    max: Optional[float] = None
    min_open: bool = False

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        if self.cfg is None:
            self.cfg = self.name.replace("-", "_")
        if self.kind in _NUMBER_KINDS and self.min is None and self.validate in (non_negative, positive):
            self.min, self.min_open = 0, self.validate is positive
            self.validate = None
        base = self._param_type()
        self.param_type = Checked(base, self.validate) if self.validate is not None else base

    def _param_type(self) -> click.ParamType:
        kind = self.kind
        if kind == "str":
            return GoChoice(list(self.choices)) if self.choices is not None else click.STRING
        if kind == "int":
            return GoInt(self.min, self.max, min_open=self.min_open)
        if kind == "float":
            return GoFloat(self.min, self.max, min_open=self.min_open)
        if kind == "bool":
            return GoBool(self.extra_bool_values)
        if kind == "duration":
            if self.min is None and self.max is None:
                return GoDuration()
            return GoDurationRange(click.FloatRange(self.min, self.max, min_open=self.min_open))
        if kind == "floatlist":
            return FloatList()
        return click.STRING  # strlist: one string per occurrence

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
        """Parse one value (text from argv, or what click parsed) with the flag's click type.

        A list flag gives a list.  Raises FlagError naming source.
        """
        try:
            if self.kind == "strlist":
                items = raw if isinstance(raw, (list, tuple)) else [raw]
                return [self.param_type.convert(str(x), None, None) for x in items if str(x) != ""]
            return self.param_type.convert(raw, None, None)
        except BadValue as e:
            raise FlagError(e.line(source)) from None

    def from_config(self, raw: Any, key: str) -> Any:
        """A TOML value: type-checked as TOML gives it; integer durations are milliseconds (NSQ)."""
        source = "%s in config file" % key
        kind = self.kind
        if kind in ("str", "strlist") and not (isinstance(raw, str) or (
                kind == "strlist" and isinstance(raw, list) and all(isinstance(x, str) for x in raw))):
            raise FlagError("invalid value %r for %s: expected a string" % (raw, source))
        if kind == "duration" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = float(raw) / 1000.0
        if kind == "int" and isinstance(raw, float):
            raise FlagError("invalid value %r for %s: expected an integer" % (raw, source))
        return self.convert(raw, source)


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
    """Merge command line > config file > defaults into {dest: parsed value}.

    cli_values are what click_options gave the command (already parsed, the
    config file's values included through click's default_map) or raw text;
    config is a TOML dict for callers that read one themselves ({} otherwise).
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _CONFIG_ERROR in ctx.meta:
        raise ctx.meta[_CONFIG_ERROR]
    by_cfg = {f.cfg: f for f in flags}
    by_name = {f.name: f for f in flags}
    values: Dict[str, Any] = {}
    for key, raw in config.items():
        spec = by_cfg.get(key)
        if spec is None:
            warn("config file: unknown option %r ignored" % key)
            continue
        target = by_name[spec.alias_of] if spec.alias_of else spec
        values[target.dest] = spec.from_config(raw, key)
    from_config = _from_default_map()
    for spec in flags:
        raw = cli_values.get(spec.dest)
        if raw is None or (spec.multiple and not raw):
            continue
        if spec.deprecated and spec.dest not in from_config:
            warn(spec.deprecated)
        target = by_name[spec.alias_of] if spec.alias_of else spec
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


def _from_default_map() -> Set[str]:
    """The parameters the running click command took from the config file (default_map)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.default_map:
        return set()
    source = click.core.ParameterSource.DEFAULT_MAP
    return {name for name in ctx.params if ctx.get_parameter_source(name) is source}


# ---------------------------------------------------------------- click glue

def click_options(flags: Sequence[Flag]) -> Callable[[Callable], Callable]:
    """Decorate a click command with one typed option per flag.

    A flag not given stays None (resolve() fills the Go default, which help
    shows); a `config` flag reads its TOML file into the context's
    default_map before the other options are processed, and a true
    `version` flag prints the version line before any other value is checked.
    """
    flag_list = list(flags)

    def decorate(fn: Callable) -> Callable:
        for spec in reversed(flag_list):
            help_text = spec.help
            shown = spec.shown_default()
            if shown and spec.alias_of is None and spec.deprecated is None:
                help_text += " (default %s)" % shown
            if spec.deprecated:
                help_text = "[deprecated] " + help_text
            extra: Dict[str, Any] = {}
            if spec.name == "config":
                extra = {"is_eager": True, "callback": _config_callback(flag_list)}
            elif spec.name == "version":
                extra = {"is_eager": True, "callback": _version_callback}
            fn = click.option(
                "--" + spec.name,
                spec.dest,
                type=spec.param_type,
                default=None,
                multiple=spec.multiple,
                metavar=spec.metavar or _metavar(spec),
                help=help_text,
                **extra,
            )(fn)
        return fn

    return decorate


_CONFIG_ERROR = "nsq_sync.flags.config_error"


def _version_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--version: print the version line and stop before any other flag is checked (as NSQ)."""
    if value:
        click.echo(version_line(ctx.info_name or ""))
        ctx.exit(0)
    return value


def _config_callback(flags: Sequence[Flag]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """--config FILE: its values become click's default_map (the command line still wins)."""

    def callback(ctx: click.Context, param: click.Parameter, path: Any) -> Any:
        if not path:
            return path
        defaults = dict(ctx.default_map or {})
        by_cfg = {f.cfg: f for f in flags}
        by_name = {f.name: f for f in flags}
        try:
            for key, raw in load_config_file(path).items():
                spec = by_cfg.get(key)
                if spec is None:
                    warn_stderr(ctx.info_name or "")("config file: unknown option %r ignored" % key)
                    continue
                target = by_name[spec.alias_of] if spec.alias_of else spec
                defaults[target.dest] = spec.from_config(raw, key)
        except FlagError as e:
            ctx.meta[_CONFIG_ERROR] = e  # raised by resolve(): --version still works, as in NSQ
            return path
        ctx.default_map = defaults
        return path

    return callback


def _metavar(spec: Flag) -> str:
    return {"str": "TEXT", "int": "INT", "float": "FLOAT", "bool": "BOOL",
            "duration": "DURATION", "strlist": "TEXT", "floatlist": "FLOAT"}[spec.kind]


def run_command(command: click.Command, prog: str, flags: Sequence[Flag],
                argv: Optional[Sequence[str]] = None) -> None:
    """Run a click command with Go-style argv; bad flags are one line on stderr, exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command.main(args=normalize_argv(args, flags), prog_name=prog, standalone_mode=False)
    except BadValue as e:
        _fail(prog, e.line())
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
