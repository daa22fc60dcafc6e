"""Performance audio as DAC codes: one row a codec frame (hop 512 at 44.1 kHz in the paper).

A recording is cut into windows of the model's length (20 s), one unit each, encoded on its own as
the training clips were. Generated audio is joined in time: units that came with start times (MIDI
segments, audio windows) are placed at them, others follow one another.
"""

from __future__ import annotations

from umt.modalities.spec import CodebookSpec

AUDIO = CodebookSpec(
    name="audio",
    description="performance audio as DAC codes",
    tokenizer="umt.tokenizers.audio:AudioTokenizer",
    # The paper's codec; a tokenizer folder states its own rate (sample_rate / hop_length).
    frames_per_second=44100 / 512,
    files="umt.inference.modality_files:AudioFiles",
    suffixes=(".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"),
    file_kind="an audio file",
    input_help="audio",
    output_help="audio (WAV)",
)
