"""One registry mechanism for every pluggable kind: reward models, policies, eval hooks, judges.

A :class:`Registry` maps kind names to builders; it is the only list of a kind's names. Config validation asks
it (:meth:`Registry.require`), and an unknown name's error names the config key and lists the known kinds.
There is no global registry: each package offers a function that returns a fresh registry of its built-in
kinds, and a run is handed the registry it should use (extend a copy with :meth:`Registry.extended` to add
kinds of your own). In the style of verl's ``register_adv_est`` / ``get_adv_estimator_fn``, without the
module-level dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from editrl.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Kind name -> entry (usually a builder). ``what`` names the kind in errors ("reward model", "policy")."""

    def __init__(self, what: str, entries: Mapping[str, T] | None = None) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    @property
    def names(self) -> tuple[str, ...]:
        """The registered kind names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Add ``name``; as a decorator when ``entry`` is omitted. Re-registering a name is an error."""
        if entry is None:

            def decorator(fn: T) -> T:
                self.register(name, fn)
                return fn

            return decorator
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.what} kind names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.what} kind {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def extended(self, **entries: T) -> Registry[T]:
        """A new registry holding these kinds and this one's; this registry is left unchanged."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._entries = dict(self._entries)
        for name, entry in entries.items():
            out.register(name, entry)
        return out

    def require(self, name: str, key: str = "kind") -> None:
        """Raise a :class:`ConfigError` naming ``key`` and the known kinds unless ``name`` is registered."""
        if name not in self._entries:
            raise ConfigError(f"{key}: unknown {self.what} kind {name!r}; known: {list(self.names)}")

    def get(self, name: str, key: str = "kind") -> T:
        """The entry of ``name`` (errors as :meth:`require`)."""
        self.require(name, key)
        return self._entries[name]
