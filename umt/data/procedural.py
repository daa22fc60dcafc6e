"""Procedurally generated piano pieces (grand staff, both hands) for the corpus.

Each piece draws, from its own seed, a key (up to five sharps or flats, major or minor), a meter
(2/4, 3/4, 4/4, 6/8, 3/8, 2/2), and per measure and hand a rhythm (whole to sixteenth notes,
dotted values, rests), pitches from the key's scale (right hand in the treble, left hand in the
bass), two- and three-note chords, and ties between equal pitches across beats and barlines.
Beams are made by music21 from the meter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from music21 import stream

METERS = ("2/4", "3/4", "4/4", "6/8", "3/8", "2/2")
# Durations in quarter notes, and the ones used in compound meters (dotted groupings).
_DURATIONS_SIMPLE = (4.0, 3.0, 2.0, 1.5, 1.0, 0.75, 0.5, 0.25)
_DURATIONS_COMPOUND = (3.0, 1.5, 1.0, 0.5, 0.25)


def _measure_rhythm(rng: np.random.Generator, length: float, compound: bool, busy: float) -> list[float]:
    """Durations filling ``length`` quarter notes; ``busy`` in [0, 1] favours short values."""
    choices = _DURATIONS_COMPOUND if compound else _DURATIONS_SIMPLE
    out: list[float] = []
    left = length
    while left > 1e-9:
        fitting = [d for d in choices if d <= left + 1e-9]
        weights = np.array([(1.0 / d) ** busy for d in fitting])
        duration = float(rng.choice(fitting, p=weights / weights.sum()))
        out.append(duration)
        left -= duration
    return out


def generate_piano_piece(seed: int, n_measures: int = 12) -> stream.Score:
    """A deterministic grand-staff piano score of ``n_measures`` measures from ``seed``."""
    from music21 import chord, clef, instrument, key, layout, meter, note, stream, tempo, tie

    rng = np.random.default_rng(seed)
    sharps = int(rng.integers(-5, 6))
    mode = str(rng.choice(["major", "minor"]))
    key_signature = key.KeySignature(sharps)
    the_key = key_signature.asKey(mode)
    meter_text = str(rng.choice(METERS))
    time_signature = meter.TimeSignature(meter_text)
    compound = meter_text in ("6/8", "3/8")
    bar_length = float(time_signature.barDuration.quarterLength)
    qpm = int(rng.integers(60, 141))
    scale = the_key.getScale(mode)
    treble_pitches = [p for p in scale.getPitches("C4", "A5")]
    bass_pitches = [p for p in scale.getPitches("E2", "C4")]

    staves = []
    for hand, (pitches, staff_clef) in enumerate(
        ((treble_pitches, clef.TrebleClef()), (bass_pitches, clef.BassClef()))
    ):
        staff = stream.PartStaff()
        staff.id = f"P1-Staff{hand + 1}"
        busy = float(rng.uniform(0.3, 1.2)) if hand == 0 else float(rng.uniform(0.0, 0.8))
        chord_rate = float(rng.uniform(0.1, 0.4)) if hand == 0 else float(rng.uniform(0.2, 0.5))
        position = int(rng.integers(2, len(pitches) - 3))
        previous = None
        for number in range(1, n_measures + 1):
            measure = stream.Measure(number=number)
            if number == 1:
                measure.insert(0, staff_clef)
                measure.insert(0, key.KeySignature(sharps))
                measure.insert(0, meter.TimeSignature(meter_text))
                if hand == 0:
                    measure.insert(0, tempo.MetronomeMark(number=qpm))
            for duration in _measure_rhythm(rng, bar_length, compound, busy):
                if rng.random() < 0.08:
                    measure.append(note.Rest(quarterLength=duration))
                    previous = None
                    continue
                if previous is not None and rng.random() < 0.12:
                    # tie the previous note/chord into this one
                    element = previous.__class__(previous.pitches if previous.isChord else previous.pitch)
                    element.quarterLength = duration
                    previous.tie = previous.tie or tie.Tie("start")
                    if previous.tie.type == "stop":
                        previous.tie = tie.Tie("continue")
                    element.tie = tie.Tie("stop")
                else:
                    position = int(np.clip(position + rng.integers(-3, 4), 0, len(pitches) - 1))
                    if rng.random() < chord_rate:
                        steps = sorted(
                            {position, *(position + int(s) for s in rng.choice([2, 3, 4, 5, 7], size=2))}
                        )
                        chosen = [pitches[min(s, len(pitches) - 1)] for s in steps[: int(rng.integers(2, 4))]]
                        element = chord.Chord(sorted({p.nameWithOctave: p for p in chosen}.values()))
                    else:
                        element = note.Note(pitches[position])
                    element.quarterLength = duration
                measure.append(element)
                previous = element
            staff.append(measure)
        staff.makeNotation(inPlace=True)
        staves.append(staff)
    score = stream.Score()
    staves[0].insert(0, instrument.Piano())
    for staff in staves:
        score.insert(0, staff)
    score.insert(0, layout.StaffGroup(staves, symbol="brace", barTogether=True))
    return score
