"""Small explicit registries with duplicate checks and did-you-mean errors (as in seqio).

Registries are filled in one place by their owning module (``umt.tasks`` for tasks and mixtures,
``umt.tokenizers.registry`` for tokenizers); nothing registers itself by being imported.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from umt.errors import UserError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, else a list of the choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; choose from: {', '.join(choices)}" if choices else ""


class Registry(Generic[T]):
    """A name -> object mapping that refuses duplicates and suggests near misses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}")
        del self._items[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)


def import_class(target: str | type, kind: str = "class") -> type:
    """Import ``"package.module:Class"`` (or pass a class through); one line naming the ``kind``
    (``"tokenizer"``, ``"file class"``) when the module or the class is not there."""
    if isinstance(target, type):
        return target
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"{kind} target {target!r} must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UserError(f"{kind} {target} is not available ({error})") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        names = [name for name in vars(module) if not name.startswith("_")]
        raise UserError(
            f"{module_name} has no class {class_name!r}{did_you_mean(class_name, names)}"
        ) from None
