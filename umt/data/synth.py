"""Score -> MIDI (pretty_midi, one instrument and General MIDI program per part) -> WAV (FluidSynth).

Timing comes from one tempo per excerpt (quarter notes per minute, the score's tempo mark in force
at the excerpt's start, else :data:`umt.data.excerpts.DEFAULT_QPM`). Tied notes are merged; grace
notes, which take no time in the score, are left out of the MIDI.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from umt.errors import UserError
from umt.utils.io import atomic_path

if TYPE_CHECKING:
    import pretty_midi
    from music21 import stream

SAMPLE_RATE = 44100
RELEASE_TAIL_S = 1.0  # audio kept after the last note-off, for the release
VELOCITY = 80

# General MIDI programs (0-based) by instrument name keyword, for parts without a MIDI program.
_PROGRAM_BY_NAME = (
    ("violoncello", 42),
    ("cello", 42),
    ("viola", 41),
    ("violin", 40),
    ("contrabass", 43),
    ("soprano", 52),
    ("alto", 52),
    ("tenor", 52),
    ("bass", 52),
    ("voice", 52),
    ("piano", 0),
)


class FluidSynthMissing(UserError):
    """The ``fluidsynth`` program is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "fluidsynth not found: install the Debian package 'fluidsynth' "
            "(apt-get install fluidsynth; `make setup` does it as root), or build without audio"
        )


def default_soundfont() -> Path:
    """The General MIDI soundfont shipped inside pretty_midi's wheel (TimGM6mb.sf2)."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise UserError(f"{path}: soundfont missing from the pretty_midi installation")
    return path


def fluidsynth_binary() -> str | None:
    return shutil.which("fluidsynth")


def part_program(part, default: int = 0) -> int:
    """The GM program of a music21 part: its instrument's midiProgram, else by name, else default."""
    instrument = part.getInstrument(returnDefault=False)
    if instrument is not None and instrument.midiProgram is not None:
        return int(instrument.midiProgram)
    names = [
        part.partName,
        getattr(instrument, "instrumentName", None),
        getattr(instrument, "partName", None),
    ]
    text = " ".join(n for n in names if n).lower()
    for keyword, program in _PROGRAM_BY_NAME:
        if keyword in text:
            return program
    return default


def score_notes(score: stream.Score) -> list[list[tuple[float, float, int]]]:
    """Per part, the sounding notes as (onset, duration, midi pitch) in quarter notes.

    Ties are followed pitch by pitch (a chord may continue one pitch and attack another); grace
    notes and zero-length notes are dropped. Sorted by (onset, pitch).
    """
    result = []
    for part in score.parts:
        finished: list[tuple[float, float, int]] = []
        open_notes: dict[int, list[float]] = {}  # midi pitch -> [onset, end] of a tied note
        for element in part.flatten().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            onset = float(element.getOffsetInHierarchy(part))
            end = onset + float(element.quarterLength)
            members = element.notes if element.isChord else [element]
            for member in members:
                pitch = int(member.pitch.midi)
                tie = member.tie if member.tie is not None else element.tie
                tie_type = tie.type if tie is not None else None
                held = open_notes.get(pitch)
                if held is not None and tie_type in ("stop", "continue") and abs(held[1] - onset) < 1e-6:
                    held[1] = end
                else:
                    if held is not None:
                        finished.append((held[0], held[1] - held[0], pitch))
                    open_notes[pitch] = [onset, end]
                if tie_type in (None, "stop"):
                    held = open_notes.pop(pitch)
                    finished.append((held[0], held[1] - held[0], pitch))
        finished.extend((start, stop - start, pitch) for pitch, (start, stop) in open_notes.items())
        result.append(sorted(finished, key=lambda note: (note[0], note[2])))
    return result


def score_to_midi(score: stream.Score, qpm: float, default_program: int = 0) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI with one instrument per part of ``score``, notes timed at ``qpm``."""
    import pretty_midi

    seconds_per_quarter = 60.0 / qpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    for part, notes in zip(score.parts, score_notes(score)):
        program = part_program(part, default_program)
        instrument = pretty_midi.Instrument(program=program, name=part.partName or "")
        for onset, duration, pitch in notes:
            instrument.notes.append(
                pretty_midi.Note(
                    velocity=VELOCITY,
                    pitch=pitch,
                    start=onset * seconds_per_quarter,
                    end=(onset + duration) * seconds_per_quarter,
                )
            )
        instrument.notes.sort(key=lambda n: (n.start, n.pitch))
        midi.instruments.append(instrument)
    return midi


def write_midi(midi: pretty_midi.PrettyMIDI, path: str | Path) -> None:
    with atomic_path(path, suffix=".mid") as tmp:
        midi.write(str(tmp))


def midi_to_wav(
    midi_path: str | Path,
    wav_path: str | Path,
    soundfont: str | Path | None = None,
    sample_rate: int = SAMPLE_RATE,
    tail_s: float = RELEASE_TAIL_S,
) -> float:
    """Synthesise ``midi_path`` with FluidSynth to a mono 16-bit WAV; returns its duration in s.

    The WAV lasts exactly the MIDI's end time plus ``tail_s`` (release), so durations are known.
    """
    import pretty_midi
    import soundfile

    binary = fluidsynth_binary()
    if binary is None:
        raise FluidSynthMissing()
    soundfont = Path(soundfont) if soundfont is not None else default_soundfont()
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    end_time = midi.get_end_time()
    n_samples = round((end_time + tail_s) * sample_rate)
    with tempfile.TemporaryDirectory(prefix="umt-synth-") as tmp_dir:
        # a silent controller event at end + tail keeps FluidSynth rendering through the release
        padded = Path(tmp_dir) / "padded.mid"
        if midi.instruments:
            midi.instruments[0].control_changes.append(
                pretty_midi.ControlChange(number=64, value=0, time=end_time + tail_s)
            )
        midi.write(str(padded))
        raw = Path(tmp_dir) / "raw.wav"
        command = [
            binary, "-ni", "-q", "-g", "0.6", "-r", str(sample_rate),
            "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0",
            "-F", str(raw), "-T", "wav", str(soundfont), str(padded),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if completed.returncode != 0 or not raw.is_file():
            message = (completed.stderr or completed.stdout).strip().splitlines()
            raise RuntimeError(f"fluidsynth failed: {message[-1] if message else completed.returncode}")
        audio, rate = soundfile.read(str(raw), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz, expected {sample_rate}")
    mono = audio.mean(axis=1)
    if len(mono) < n_samples:
        mono = np.concatenate([mono, np.zeros(n_samples - len(mono), dtype=np.float32)])
    mono = np.clip(mono[:n_samples], -1.0, 1.0)
    with atomic_path(wav_path, suffix=".wav") as tmp:
        soundfile.write(str(tmp), mono, sample_rate, subtype="PCM_16", format="WAV")
    return n_samples / sample_rate
