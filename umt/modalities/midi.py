"""MIDI as MT3/YourMT3-style events: absolute time shifts in 10 ms ticks within a segment,
pitch, note-on/off, tie section marker, program and drum pitch (:mod:`umt.tokenizers.midi`).

A MIDI file is read as one unit per segment of the model's length (20 s); generated segments are
decoded together (tie sections carry notes across them), each at its unit's start time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from umt.modalities.spec import ModalitySpec

if TYPE_CHECKING:
    from umt.vocab import VocabConfig

NUM_PITCHES = 128
NUM_VELOCITIES = 2  # note-off (0) and note-on (1), as in MT3 / YourMT3
NUM_PROGRAMS = 128


@dataclass(frozen=True)
class MidiSpec(ModalitySpec):
    def content(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        return (
            ("shift", config.midi_max_shift + 1),
            ("pitch", NUM_PITCHES),
            ("velocity", NUM_VELOCITIES),
            ("tie", 1),
            ("program", NUM_PROGRAMS),
            ("drum", NUM_PITCHES),
        )


MIDI = MidiSpec(
    name="midi",
    description="MIDI note events (MT3 / YourMT3 style)",
    tokenizer="umt.tokenizers.rule_based:MidiFileTokenizer",
    frames_per_second=100.0,
    files="umt.inference.modality_files:MidiFiles",
    suffixes=(".mid", ".midi"),
    file_kind="a MIDI file",
    input_help="MIDI",
    output_help="MIDI",
)
