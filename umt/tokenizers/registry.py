"""Which tokenizer class serves which modality, imported lazily.

The modality specs (:mod:`umt.modalities`) name each modality's tokenizer as ``"module:Class"``
and say whether it is trained; :func:`default_registry` is that table. Nothing is imported until a
tokenizer is asked for, so ``import umt`` stays light and a modality whose tokenizer is not
installed (or not written yet) fails only when used, with a clear message.

* Neural tokenizers (``image``, ``audio``) implement :class:`umt.tokenizers.base.NeuralTokenizer`
  and are restored from a self-describing folder with ``Class.from_pretrained(directory)``.
* Rule-based tokenizers (``lmx``, ``midi``) need no folder: ``Class()``; their ``fingerprint`` is
  ``""``.

Tests (or plug-ins) pass their own :class:`~umt.utils.registry.Registry` to :func:`load_tokenizer`
instead of changing the default one; a registry value may be a ``"module:Class"`` string or the
class itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from umt.errors import UserError
from umt.modalities import MODALITY_SPECS
from umt.utils.registry import Registry, did_you_mean, import_class


def default_registry() -> Registry[Any]:
    """The modality -> ``"module:Class"`` table of the registered modality specs."""
    registry: Registry[Any] = Registry("tokenizer modality")
    for name in MODALITY_SPECS:
        registry.add(name, MODALITY_SPECS.get(name).tokenizer)
    return registry


def resolve_class(target: str | type) -> type:
    """Import a tokenizer's ``"module:Class"`` (or pass a class through)."""
    return import_class(target, "tokenizer")


def tokenizer_class(modality: str, registry: Registry[Any] | None = None) -> type:
    """The tokenizer class registered for ``modality`` (did-you-mean for unknown names)."""
    registry = default_registry() if registry is None else registry
    if modality not in registry:
        raise UserError(f"unknown modality {modality!r}{did_you_mean(modality, registry.names())}")
    return resolve_class(registry.get(modality))


def needs_directory(modality: str) -> bool:
    """Whether the modality's tokenizer is restored from a folder (``--tokenizer DIR``)."""
    return modality in MODALITY_SPECS and MODALITY_SPECS.get(modality).trained_tokenizer


def load_tokenizer(
    modality: str, directory: str | Path | None = None, registry: Registry[Any] | None = None
) -> Any:
    """An instance of the modality's tokenizer: ``from_pretrained(directory)`` for neural ones,
    ``Class()`` for rule-based ones (which take no folder)."""
    cls = tokenizer_class(modality, registry)
    if needs_directory(modality):
        if directory is None:
            raise UserError(
                f"baking {modality} needs --tokenizer DIR (a trained {modality} tokenizer folder)"
            )
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError("no such tokenizer folder", directory)
        return cls.from_pretrained(directory)
    if directory is not None:
        raise UserError(f"the {modality} tokenizer is rule-based: it takes no --tokenizer folder")
    return cls()
