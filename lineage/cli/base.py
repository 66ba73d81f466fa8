"""What every ``lineage`` command shares: the options ``--db`` and ``--json``, the command and
group classes that carry them, and the one place our errors become exit codes.

A command is a plain function ``handler(cli: Invocation, **options) -> int`` made into a click
command with :func:`command` or :func:`group`. ``--db`` is on every command and group (so it may
be given before or after a subcommand; the innermost one wins); ``--json``, where a command
offers it, also counts when given to the group above (``runs --json show RUN``). Both are kept in
the context's ``meta`` (shared by a context and its children) and handed to the handler as an
:class:`Invocation`.

Exit codes: 0 success, 1 an error of ours (``LineageError``, or a file problem: one
``lineage: error: ...`` line on stderr), 2 a usage error (click), 130 interrupted. A handler
may return 1 itself (``recover`` does, when nothing was recovered).

Library errors (sqlite3, psycopg, SQLAlchemy) reach the CLI already translated into StoreError
by the adapters (``lineage.adapters.errors``); the CLI does not catch them by name. Anything
else that escapes a command is a bug: as a last resort it is still one line and exit 1, with
"(run with LINEAGE_DEBUG=1 for the traceback)"; ``LINEAGE_DEBUG=1`` prints the traceback of
any error before its line.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console

from lineage.api import Tracker
from lineage.cli import format as fmt
from lineage.errors import LineageError

PROG = "lineage"
PIPE_WIDTH = 200  # when stdout is not a terminal (and COLUMNS is unset): don't fold tables
HELP_OPTIONS = ["-h", "--help"]
WRITE_SIZE = 1 << 16  # characters of JSON gathered per write to stdout
DEBUG_ENV = "LINEAGE_DEBUG"  # set (not 0): print the traceback of an error before its line
_DB, _JSON = "lineage.db", "lineage.json"  # keys in click's Context.meta

Handler = Callable[..., int]


@dataclass(frozen=True)
class Invocation:
    """What a handler gets besides its own options.

    ``db`` is the ``--db`` given (None: ``LINEAGE_DATABASE_URL``, else ``./lineage.db``, as the
    composition root decides); ``json`` whether ``--json`` was given; ``console`` where people's
    output goes."""

    db: str | None
    json: bool
    console: Console


# -- the shared options --------------------------------------------------------------------------


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:  # given: overrides what a parent was given
            ctx.meta[key] = value

    return callback


def db_option() -> click.Option:
    return click.Option(["--db", "--database-url", "db"], metavar="URL", expose_value=False,
                        callback=_remember(_DB),
                        help="SQLAlchemy URL or SQLite file path of the event store")


json_option = click.option("--json", "json", is_flag=True, expose_value=False,
                           callback=_remember(_JSON), help="print machine-readable JSON")


class Seconds(click.FloatRange):
    """A finite, non-negative number of seconds (a range check alone lets NaN through)."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, max=math.inf, max_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def exclusive(options: dict[str, Any]) -> None:
    """Refuse, as a usage error, more than one of these options (flag name -> value given)."""
    given = [name for name, value in options.items() if value is not None and value is not False]
    if len(given) > 1:
        raise click.UsageError(f"option {given[1]} is not allowed with {given[0]}",
                               click.get_current_context())


# -- commands and groups -------------------------------------------------------------------------


class _Formatter(click.HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


class LineageCommand(click.Command):
    """A command with ``--db``."""

    context_class = _Context

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(db_option())


class LineageGroup(click.Group):
    """A group with ``--db``; without a subcommand it runs its own handler, if it has one, or
    fails with a usage error."""

    context_class = _Context
    command_class = LineageCommand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("invoke_without_command", kwargs.get("callback") is not None)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)
        self.params.append(db_option())


def command(name: str, summary: str, details: str = "", **attrs: Any
            ) -> Callable[[Handler], click.Command]:
    """Make ``handler(cli, **options)`` the command ``name`` (see :func:`entrypoint`).
    ``summary`` is its line in the list of commands; ``details`` follow it in its ``--help``."""
    def decorate(handler: Handler) -> click.Command:
        return click.command(name, cls=LineageCommand, **_help(summary, details), **attrs)(
            entrypoint(handler))

    return decorate


def group(name: str, summary: str, details: str = "", **attrs: Any
          ) -> Callable[[Handler], LineageGroup]:
    """Make ``handler(cli, **options)`` a group that runs it when no subcommand is given."""
    def decorate(handler: Handler) -> LineageGroup:
        return click.group(name, cls=LineageGroup, **_help(summary, details), **attrs)(
            entrypoint(handler))

    return decorate


def _help(summary: str, details: str) -> dict[str, str]:
    return {"short_help": summary, "help": f"{summary}\n\n{details}" if details else summary}


def entrypoint(handler: Handler) -> Callable[..., int]:
    """Call ``handler`` with the Invocation and its options; map our errors to exit codes.

    Returns the handler's exit code, or 1 after one ``lineage: error:`` line for a
    LineageError or OSError, 130 when interrupted. Usage errors (click's) pass through.
    """
    @functools.wraps(handler)
    def run(**options: Any) -> int:
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is not None:  # a group: only its subcommand runs
            return 0
        cli = Invocation(ctx.meta.get(_DB), bool(ctx.meta.get(_JSON)), make_console())
        try:
            return int(handler(cli, **options))
        except BrokenPipeError:
            _silence_stdout()  # the reader went away (| head): not an error worth a message
            return 1
        except (LineageError, OSError) as error:
            debug_traceback()
            fail(str(error) or type(error).__name__)
            return 1
        except KeyboardInterrupt:
            fail("interrupted")
            return 130
        except (click.ClickException, click.Abort):
            raise  # usage errors: ``lineage.cli.main.main`` reports them (exit 2)
        except Exception as error:  # the last resort (see the module's docstring): one line
            return unexpected(error)

    return run


def unexpected(error: Exception) -> int:
    """Report an error that is not ours (a bug): one line naming it, and exit code 1."""
    debug_traceback()
    fail(f"unexpected {type(error).__name__}: {error} (run with {DEBUG_ENV}=1 for the traceback)")
    return 1


def debug_traceback() -> None:
    """The traceback of the error being handled, on stderr, when LINEAGE_DEBUG is set."""
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        traceback.print_exc()


# -- helpers for handlers ------------------------------------------------------------------------


def reader(cli: Invocation) -> Tracker:
    """A tracker on the existing store, for a command that records nothing: it never starts
    the background OTLP exporter, so OTLP settings (even malformed ones) do not concern it.
    Raises StoreError when there is no store there."""
    return Tracker(cli.db, create=False, export_otlp=False)


def make_console() -> Console:
    """Colour only on a terminal (rich decides); plain and wide when piped."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPE_WIDTH)
    return console


def print_json(value: Any) -> None:
    """``value`` as indented strict JSON on stdout, written as it is made
    (``lineage.cli.jsonout``: a list in the outer two levels may be a one-pass iterator)."""
    pieces: list[str] = []
    size = 0
    for piece in fmt.iterencode(value):
        pieces.append(piece)
        size += len(piece)
        if size >= WRITE_SIZE:
            sys.stdout.write("".join(pieces))
            pieces.clear()
            size = 0
    sys.stdout.write("".join(pieces) + "\n")


def print_json_line(value: Any) -> None:
    """One JSON document on one line (JSON Lines: for a stream of documents), flushed."""
    sys.stdout.write(json.dumps(fmt.jsonable(value), allow_nan=False, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    """One ``lineage: error: ...`` line on stderr."""
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
