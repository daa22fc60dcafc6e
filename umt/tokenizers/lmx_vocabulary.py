"""The closed vocabulary of Linearized MusicXML (LMX), core and extended flavour.

The token set and its order are the ones defined by Mayer et al., "Practical End-to-End Optical
Music Recognition for Pianoform Music" (ICDAR 2024), 224 tokens. The order is part of the unified
vocabulary layout (and therefore of its hash): never reorder, only append with a new layout version.
"""

from __future__ import annotations

from fractions import Fraction

KEY_TOKENS: tuple[str, ...] = tuple(f"key:fifths:{fifths}" for fifths in range(-7, 8))

BEATS_TOKENS: tuple[str, ...] = tuple(f"beats:{beats}" for beats in range(1, 17))
BEAT_TYPE_TOKENS: tuple[str, ...] = ("beat-type:2", "beat-type:4", "beat-type:8", "beat-type:16")
TIME_SIGNATURE_TOKENS: tuple[str, ...] = ("time", *BEATS_TOKENS, *BEAT_TYPE_TOKENS)

CLEF_TOKENS: tuple[str, ...] = tuple(f"clef:{sign}{line}" for sign in "GCF" for line in range(1, 6))

# Shortest to longest; each type doubles the previous one.
NOTE_TYPE_TOKENS: tuple[str, ...] = (
    "1024th", "512th", "256th", "128th", "64th", "32nd", "16th",
    "eighth", "quarter", "half", "whole", "breve", "long", "maxima",
)  # fmt: skip
NOTE_TYPE_TO_QUARTERS: dict[str, Fraction] = {
    name: Fraction(2) ** (index - NOTE_TYPE_TOKENS.index("quarter"))
    for index, name in enumerate(NOTE_TYPE_TOKENS)
}

# Lowest to highest pitch: C0 D0 ... B9 (diatonic steps; accidentals are separate tokens).
PITCH_TOKENS: tuple[str, ...] = tuple(f"{step}{octave}" for octave in range(10) for step in "CDEFGAB")

VOICE_TOKENS: tuple[str, ...] = tuple(f"voice:{voice}" for voice in range(1, 13))

TIME_MODIFICATION_TOKENS: tuple[str, ...] = (
    "3in2", "6in4", "2in1", "2in3", "5in4", "7in8", "7in6", "9in8", "4in3", "7in4", "4in6", "13in8",
    "22in16", "10in4", "12in8", "9in4", "10in8", "18in4", "16in8", "15in8", "5in3", "11in8", "11in12",
    "5in2", "8in2", "4in2", "7in1", "35in16", "9in2",
)  # fmt: skip

ACCIDENTAL_TOKENS: tuple[str, ...] = (
    "sharp", "flat", "natural", "double-sharp", "flat-flat", "natural-sharp", "natural-flat",
)  # fmt: skip

STEM_TOKENS: tuple[str, ...] = ("stem:up", "stem:down", "stem:none")
STAFF_TOKENS: tuple[str, ...] = ("staff:1", "staff:2", "staff:3")
BEAM_TOKENS: tuple[str, ...] = ("beam:begin", "beam:end", "beam:forward-hook", "beam:backward-hook")

TREMOLO_TYPE_TOKENS: tuple[str, ...] = (
    "tremolo:single", "tremolo:start", "tremolo:stop", "tremolo:unmeasured",
)  # fmt: skip
TREMOLO_MARKS_TOKENS: tuple[str, ...] = ("tremolo:1", "tremolo:2", "tremolo:3", "tremolo:4")

EXTENDED_FLAVOR_TOKENS: tuple[str, ...] = (
    "slur:start", "slur:stop", "fermata", "arpeggiate", "staccato", "accent", "strong-accent",
    "tenuto", "trill-mark", *TREMOLO_TYPE_TOKENS, *TREMOLO_MARKS_TOKENS,
)  # fmt: skip

NOTE_PREFIX_TOKENS: tuple[str, ...] = (
    "print-object:no", "grace", "grace:slash", "chord",
    *PITCH_TOKENS, "rest", "forward", "backup",
    *VOICE_TOKENS,
)  # fmt: skip

NOTE_ROOT_TOKENS: tuple[str, ...] = (*NOTE_TYPE_TOKENS, "rest:measure")

NOTE_SUFFIX_TOKENS: tuple[str, ...] = (
    *TIME_MODIFICATION_TOKENS, "dot", *ACCIDENTAL_TOKENS, *STEM_TOKENS, *STAFF_TOKENS, *BEAM_TOKENS,
    "tied:start", "tied:stop", "tuplet:start", "tuplet:stop", *EXTENDED_FLAVOR_TOKENS,
)  # fmt: skip

LMX_TOKENS: tuple[str, ...] = (
    "measure",
    *KEY_TOKENS,
    *TIME_SIGNATURE_TOKENS,
    *CLEF_TOKENS,
    *NOTE_PREFIX_TOKENS,
    *NOTE_ROOT_TOKENS,
    *NOTE_SUFFIX_TOKENS,
)

# Tokens that the "without tuplets" SER variant removes before comparing.
TUPLET_TOKENS: frozenset[str] = frozenset({"tuplet:start", "tuplet:stop", *TIME_MODIFICATION_TOKENS})
