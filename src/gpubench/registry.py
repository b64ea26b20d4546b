"""Names -> entries, the one pattern behind the backend, workload and scenario registries:
the built-ins, then entries registered in this process (tests, notebooks, and the
modules named in GPUBENCH_PLUGINS, which register themselves when imported), then the
entry points of installed packages (`group`). Plugins are loaded on the first lookup that
misses the built-ins and registered entries, or on the first full listing, so a lookup
of a built-in name imports nothing."""

from __future__ import annotations

from typing import Dict, Generic, List, Mapping, Optional, Sequence, TypeVar

from gpubench.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin: Mapping[str, T], group: Optional[str] = None,
                 also: Sequence[str] = ()) -> None:
        self.kind = kind  # for messages: "unknown backend 'x' (valid: ...)"
        self.also = tuple(also)  # names resolved elsewhere but valid (the backend `auto`)
        self.builtin: Dict[str, T] = dict(builtin)
        self.extra: Dict[str, T] = {}  # registered in this process, and plugins
        self.group = group  # the entry-point group plugins register in, if any
        self._plugins_loaded = group is None

    def register(self, name: str, entry: T) -> None:
        """Adds an entry for this process (tests, notebooks, plugins)."""
        self.extra[name] = entry

    def all(self) -> Dict[str, T]:
        """Every entry, plugins loaded."""
        if not self._plugins_loaded:
            from gpubench.plugins import import_env_plugins, load_group
            self._plugins_loaded = True
            for name, entry in load_group(self.group).items():
                self.extra.setdefault(name, entry)
            import_env_plugins()
        return {**self.builtin, **self.extra}

    def names(self) -> List[str]:
        """The valid names: the entries' (sorted), then `also`."""
        return sorted(self.all()) + list(self.also)

    def find(self, name: str) -> Optional[T]:
        """The entry called `name`, or None; plugins are loaded only when it is neither
        built in nor registered."""
        found = self.builtin.get(name) or self.extra.get(name)
        return found if found is not None else self.all().get(name)

    def get(self, name: str) -> T:
        """The entry called `name`; UserError naming the valid ones when there is none."""
        found = self.find(name)
        if found is None:
            raise UserError(f"unknown {self.kind} {name!r} (valid: {', '.join(self.names())})")
        return found
