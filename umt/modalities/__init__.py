"""The modalities UMT translates between, one :class:`ModalitySpec` each, in one explicit registry.

:data:`MODALITY_SPECS` is filled here and nowhere else; the paper's vocabulary holds
:data:`PAPER_MODALITIES` in that order. A new modality is a spec (a module beside these), a
tokenizer, its entry in a vocabulary config's ``modalities`` list, and a test: its block is
appended after the others', so no existing id moves. Tests and plug-ins add theirs with
:func:`register_modality` (and take it out again with :func:`unregister_modality`).
"""

from __future__ import annotations

from umt.modalities.audio import AUDIO
from umt.modalities.image import IMAGE
from umt.modalities.lmx import LMX
from umt.modalities.midi import MIDI
from umt.modalities.spec import ModalitySpec, WordListSpec
from umt.modalities.text import TEXT
from umt.utils.registry import Registry, did_you_mean

__all__ = [
    "MODALITY_SPECS",
    "PAPER_MODALITIES",
    "ModalitySpec",
    "WordListSpec",
    "check_modality",
    "get_spec",
    "register_modality",
    "unregister_modality",
]

MODALITY_SPECS: Registry[ModalitySpec] = Registry("modality")
for _spec in (IMAGE, AUDIO, LMX, MIDI, TEXT):
    MODALITY_SPECS.add(_spec.name, _spec)

PAPER_MODALITIES: tuple[str, ...] = ("image", "audio", "lmx", "midi")
"""The paper's four, in the order of their vocabulary blocks (``text`` is registered too, for
MusicScore's prompts, and appended by the experiments that use it)."""


def get_spec(name: str) -> ModalitySpec:
    """The registered spec ``name`` (``ValueError`` with a did-you-mean hint otherwise)."""
    check_modality(name)
    return MODALITY_SPECS.get(name)


def check_modality(name: str) -> None:
    if name not in MODALITY_SPECS:
        raise ValueError(f"unknown modality {name!r}{did_you_mean(name, MODALITY_SPECS.names())}")


def register_modality(spec: ModalitySpec) -> ModalitySpec:
    """Add a modality (a plug-in's or a test's); refuses a name already taken."""
    return MODALITY_SPECS.add(spec.name, spec)


def unregister_modality(name: str) -> None:
    """Take out a modality added with :func:`register_modality` (the built-in ones stay)."""
    if name in PAPER_MODALITIES:
        raise ValueError(f"{name} is built in")
    MODALITY_SPECS.remove(name)
