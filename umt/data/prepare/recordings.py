"""Recordings with aligned MIDI (MAESTRO, Slakh2100, ...): what their converters share.

Each recording becomes ``audio/SPLIT/KEY.flac`` (mono, 44.1 kHz, 16-bit: what the codec reads) and
``midi/SPLIT/KEY.mid`` (the recording's own MIDI file, checked to be readable), one record with
``start_seconds`` 0 and ``end_seconds`` the recording's length. Baking cuts both into the same
time-exact windows (:mod:`umt.modalities.windows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from umt.data.prepare.base import Converter, WorkUnit
from umt.errors import InputError
from umt.tokenizers.audio import resample
from umt.tokenizers.midi import notes_from_midi
from umt.utils.io import atomic_path, atomic_write_bytes

SAMPLE_RATE = 44100


class RecordingConverter(Converter):
    """Converts units whose ``sources`` name an ``audio`` and a ``midi`` file."""

    def convert(self, unit: WorkUnit) -> dict[str, Any]:
        sources = self.source_files(unit)
        audio_in, midi_in = sources["audio"], sources["midi"]
        notes_from_midi(midi_in)  # refuses a truncated or corrupt file (InputError)
        samples = read_mono(audio_in, SAMPLE_RATE)
        audio = self.output_path("audio", unit, ".flac")
        midi = self.output_path("midi", unit, ".mid")
        write_flac(self.out / audio, samples)
        atomic_write_bytes(self.out / midi, midi_in.read_bytes())  # the recording's own file
        return {
            "key": unit.key,
            "split": unit.split,
            "piece": unit.piece,
            "audio": audio.as_posix(),
            "midi": midi.as_posix(),
            "start_seconds": 0.0,
            "end_seconds": round(len(samples) / SAMPLE_RATE, 6),
            **unit.extra,
        }


def write_flac(path: Path, samples: np.ndarray) -> None:
    """Mono ``samples`` at :data:`SAMPLE_RATE` as 16-bit FLAC, written atomically."""
    with atomic_path(path, suffix=".flac") as tmp:
        soundfile.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="FLAC")


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """A recording as mono float32 at ``sample_rate`` (a truncated or unreadable file raises
    InputError naming it)."""
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile's error for a corrupt file
        raise InputError(f"not a readable audio file ({error})", path) from None
    if samples.size == 0:
        raise InputError("holds no audio samples", path)
    # A matrix-vector product: numpy's mean over the channel axis is 3x slower than reading.
    mono = samples @ np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return resample(mono, int(rate), sample_rate) if rate != sample_rate else mono
