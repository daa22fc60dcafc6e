"""Time-exact windows: a recording and its MIDI are baked into the same wall-clock windows, which
pair by key, carry no EOS inside, and line up to 10 ms; inference uses the model's window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests.test_bake import FakeAudioTokenizer
from umt.data.bake import bake_files
from umt.data.pipeline import PairedDataset
from umt.data.shards import ShardSet
from umt.modalities.windows import check_window_seconds, sample_windows, split_window_key, window_key
from umt.tokenizers.audio import AudioTokenizer
from umt.tokenizers.midi import Note, decode_segments, notes_from_midi
from umt.tokenizers.rule_based import MidiFileTokenizer
from umt.vocab import default_vocabulary

VOCAB = default_vocabulary()  # the fake audio tokenizer makes 4 codebooks
RATE, HOP = 1000, 10  # the fake codec: one row per 10 samples = 10 ms


class WindowedFakeAudio(FakeAudioTokenizer):
    """The fake audio tokenizer (one row per 100 samples) at 1 kHz, cut as the real one cuts."""

    sample_rate, hop_length = RATE, 100
    windows = AudioTokenizer.windows


def test_window_keys_and_bounds():
    assert split_window_key(window_key("a@b", 12)) == ("a@b", 12) and split_window_key("x@y") == ("x@y", None)
    assert sample_windows(45_000, RATE, 20.0, min_samples=100) == [
        (0, 20_000),
        (20_000, 40_000),
        (40_000, 45_000),
    ]
    # 44.1 kHz: window i starts at sample 20 i x 44100 exactly, a last sliver below one hop is dropped
    bounds = sample_windows(40 * 44100 + 100, 44100, 20.0, min_samples=512)
    assert bounds == [(0, 882_000), (882_000, 1_764_000)]
    with pytest.raises(ValueError, match=r"multiple of 0\.01"):
        check_window_seconds(0.005)


def _piece(path: Path) -> list[Note]:
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for start, end, pitch in ((1.0, 2.0, 60), (19.5, 21.0, 64), (21.5, 22.25, 67), (41.0, 44.5, 72)):
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=end))
    midi.instruments.append(piano)
    midi.write(str(path))
    return notes_from_midi(path)


def test_audio_and_midi_windows_pair_and_line_up_to_10_ms(tmp_path):
    notes = _piece(tmp_path / "p.mid")
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 45 * RATE).astype(np.float32)
    soundfile.write(str(tmp_path / "p.wav"), samples, RATE)
    for modality, name in (("audio", "p.wav"), ("midi", "p.mid")):
        (tmp_path / f"{modality}.txt").write_text(f"{name}\n")
    audio_out, midi_out = tmp_path / "shards" / "audio", tmp_path / "shards" / "midi"
    bake_files(tmp_path / "audio.txt", audio_out, WindowedFakeAudio(), VOCAB, variants=1, progress=False)
    bake_files(tmp_path / "midi.txt", midi_out, MidiFileTokenizer(), VOCAB, progress=False)
    audio, midi = ShardSet(audio_out), ShardSet(midi_out)
    assert audio.keys() == ["p.wav@0", "p.wav@1", "p.wav@2"]
    assert midi.keys() == ["p.mid@0", "p.mid@1", "p.mid@2"]
    assert audio.info.window_seconds == midi.info.window_seconds == 20.0
    # Window i of the audio is the exact slice [20 i, 20 i + 20) s: 200 rows of 100 ms, 50 in the last.
    assert [audio.length(f"p.wav@{i}") for i in range(3)] == [200, 200, 50]
    fake = WindowedFakeAudio()
    loaded = fake.load(tmp_path / "p.wav")  # as stored (16-bit)
    for index, (start, stop) in enumerate([(0, 20_000), (20_000, 40_000), (40_000, 45_000)]):
        expected = fake.tokenize(loaded[:, start:stop], VOCAB)
        np.testing.assert_array_equal(audio.get(f"p.wav@{index}"), expected)
    # The MIDI windows: no EOS inside; decoded at 20 i s they give back the notes, to the 10 ms tick.
    eos = VOCAB.eos("midi")
    segments = [[*midi.get(f"p.mid@{i}")[:, 0].tolist(), eos] for i in range(3)]
    assert all(segment.count(eos) == 1 for segment in segments)
    decoded = decode_segments(segments, VOCAB, 20.0, start_times=[0.0, 20.0, 40.0])
    assert [(round(n.onset, 2), round(n.offset, 2), n.pitch) for n in decoded] == [
        (round(n.onset, 2), round(n.offset, 2), n.pitch) for n in notes
    ]
    # Window 1 opens with the note sounding across 20 s (64) in its tie section, then 67 at +1.5 s.
    names = segments[1]
    tie = VOCAB["midi/tie"].start
    assert VOCAB["midi/pitch"].start + 64 in names[: names.index(tie)]
    assert VOCAB["midi/shift"].start + 150 in names[names.index(tie) :]


def test_audio_and_midi_of_one_recording_pair_window_by_window(tmp_path):
    notes = _piece(tmp_path / "p.mid")
    assert notes
    samples = np.zeros(45 * RATE, dtype=np.float32)
    soundfile.write(str(tmp_path / "p.wav"), samples, RATE)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"key": "p", "path": f"p.{suffix}"}) + "\n" for suffix in ("wav",))
    )
    (tmp_path / "midi.jsonl").write_text(json.dumps({"key": "p", "path": "p.mid"}) + "\n")
    bake_files(manifest, tmp_path / "audio", WindowedFakeAudio(), VOCAB, variants=1, progress=False)
    bake_files(tmp_path / "midi.jsonl", tmp_path / "midi", MidiFileTokenizer(), VOCAB, progress=False)
    amt = PairedDataset(ShardSet(tmp_path / "audio"), ShardSet(tmp_path / "midi"))
    assert [(k, j) for k, _, j in amt.items] == [("p@0", "p@0"), ("p@1", "p@1"), ("p@2", "p@2")]
    # A rerun finds every window done (window 0 stands for its input's windows).
    summary = bake_files(manifest, tmp_path / "audio", WindowedFakeAudio(), VOCAB, variants=1, progress=False)
    assert (summary.skipped, summary.items_written) == (1, 0)
    # Baking into the folder with another window is refused.
    from umt.errors import UserError

    with pytest.raises(UserError, match=r"window seconds 20\.0 \(this run: 10\.0\)"):
        bake_files(
            manifest, tmp_path / "audio", WindowedFakeAudio(), VOCAB, progress=False, window_seconds=10
        )


def test_inference_uses_the_models_window_and_feeds_midi_windows_without_eos(tmp_path):
    from tests import _inference_fixtures as fx
    from umt.inference import TranslationPipeline

    folder = fx.make_model_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["window_seconds"] == 20.0
    config["window_seconds"] = 10.0
    (folder / "config.json").write_text(json.dumps(config))
    pipeline = TranslationPipeline.from_pretrained(folder, device="cpu")
    assert pipeline.window_seconds == 10.0
    notes = _piece(tmp_path / "p.mid")
    segments = pipeline.midi_segments(notes)
    assert len(segments) == 5  # 0-10, 10-20, 20-30, 30-40, 40-44.5 s
    assert all(pipeline.vocab.eos("midi") not in rows[:, 0] for rows in segments)
    wave = np.zeros((1, 25 * pipeline.sample_rate), dtype=np.float32)
    assert len(pipeline.audio_windows(torch.from_numpy(wave))) == 3
