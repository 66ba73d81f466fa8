"""The one way to dispatch on event type: a table of handlers keyed by event class.

A reader of the log (a projection, the span builder) marks each handler method with the event
classes it handles::

    class Traces(Dispatcher):
        @handles(Run.Started)
        def started(self, conn, position, event): ...

so "find usages" of ``Run.Started`` finds every handler of it. ``Dispatcher`` collects the
marked methods of a class (and its bases) into ``handlers`` (event class -> method) when the
class is created; ``handler(event_type)`` gives the bound method, or None when the class has
none (the event is skipped). ``topics()`` gives the same table keyed by stored topic, for
readers that dispatch before decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

Method = TypeVar("Method", bound=Callable[..., Any])
_MARK = "_lineage_handles"


def handles(*event_types: type) -> Callable[[Method], Method]:
    """Mark a method as the handler of ``event_types``."""
    if not event_types:
        raise TypeError("handles() needs at least one event class")

    def mark(method: Method) -> Method:
        setattr(method, _MARK, event_types)
        return method

    return mark


def topic_of(event_type: type) -> str:
    """The topic a stored event of ``event_type`` carries (module and qualified name)."""
    return f"{event_type.__module__}:{event_type.__qualname__}"


class Dispatcher:
    """Base of classes that react to events by type; see the module docstring."""

    handlers: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                for event_type in getattr(member, _MARK, ()):
                    if event_type in table and table[event_type] != name:
                        raise TypeError(f"{cls.__name__}: {event_type.__qualname__} is handled "
                                        f"by both {table[event_type]} and {name}")
                    table[event_type] = name
        cls.handlers = table

    def handler(self, event_type: type) -> Callable[..., Any] | None:
        name = self.handlers.get(event_type)
        return None if name is None else getattr(self, name)

    def topics(self) -> dict[str, Callable[..., Any]]:
        """The handlers keyed by stored topic (for dispatch before decoding)."""
        return {topic_of(event_type): getattr(self, name)
                for event_type, name in self.handlers.items()}
