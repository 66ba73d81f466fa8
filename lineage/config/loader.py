"""The one settings loader: each setting declared once with its sources in precedence order.

Precedence: an explicit argument (not None) > each environment variable of ``sources`` in order
(``LINEAGE_*`` first, then the standard ones such as ``OTEL_EXPORTER_OTLP_TRACES_*`` and
``OTEL_EXPORTER_OTLP_*``) > the default. An explicit string is parsed like the variable's text;
an explicit number or flag is held to the same rule (a range, a type) and kept as given. No I/O
at import; ``resolve`` reads the environment when called and raises ConfigurationError naming
the variable, the rule and what to set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineage.errors import ConfigurationError

Parse = Callable[[str], Any]


@dataclass(frozen=True)
class Setting:
    """One setting: its environment sources (variable, parser) in precedence order, its
    default (a value, or a function for defaults read from the machine), its meaning, and the
    parser for explicit string values."""

    name: str
    sources: tuple[tuple[str, Parse], ...]
    default: Any
    meaning: str
    parse: Parse

    @property
    def env(self) -> str:
        """Our own variable (``LINEAGE_*``): the first source."""
        return self.sources[0][0]

    def default_value(self) -> Any:
        value = self.default() if callable(self.default) else self.default
        return dict(value) if isinstance(value, dict) else value


def resolve(table: Sequence[Setting], explicit: Mapping[str, Any], environ: Mapping[str, str],
            *, what: str = "setting") -> tuple[dict[str, Any], dict[str, str | None]]:
    """Every setting of ``table``: (values by name, where each came from: ``"explicit"``, the
    variable's name, or None for the default). Unknown explicit names are refused."""
    unknown = set(explicit) - {setting.name for setting in table}
    if unknown:
        raise ConfigurationError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, str | None] = {}
    for setting in table:
        values[setting.name], sources[setting.name] = resolve_one(setting, explicit, environ)
    return values, sources


def resolve_one(setting: Setting, explicit: Mapping[str, Any],
                environ: Mapping[str, str]) -> tuple[Any, str | None]:
    given = explicit.get(setting.name)
    if given is not None:
        if isinstance(given, str):
            return parse(setting.name, setting.parse, given, setting.meaning), "explicit"
        if isinstance(given, int | float):  # bools too: held to the rule of their text
            parse(setting.name, setting.parse, str(given), setting.meaning)
        return given, "explicit"
    for variable, parser in setting.sources:
        text = environ.get(variable, "")
        if text.strip():
            return parse(variable, parser, text.strip(), setting.meaning), variable
    return setting.default_value(), None


def parse(label: str, parser: Parse, text: str, meaning: str) -> Any:
    try:
        return parser(text)
    except ValueError as error:
        raise ConfigurationError(f"{label}={text!r} is invalid ({error}); set it to {meaning}") \
            from None


def number(kind: Callable[[str], Any], minimum: float, maximum: float | None = None,
           scale: float = 1) -> Parse:
    """A parser for a number in [minimum, maximum], multiplied by ``scale`` (ms -> s)."""
    def parse_number(text: str) -> Any:
        value = kind(text.strip())
        if not value >= minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be a number at least {minimum}{upper}")
        return value * scale if scale != 1 else value

    return parse_number


def flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError("must be true or false")
    return value in ("1", "true", "yes", "on")
