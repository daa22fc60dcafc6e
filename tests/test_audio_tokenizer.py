"""The audio tokenizer: protocol, chunked encoding alignment, audio I/O, variants and folders.

Uses a tiny random DAC (paper's rates, hop 512; small widths) so everything runs in seconds on CPU.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from umt.errors import CheckpointError, InputError
from umt.models.dac import DAC, DACConfig
from umt.tokenizers.audio import (
    SHIFT_SAMPLES,
    AudioTokenizer,
    encode_chunked,
    load_audio,
    shift_audio,
)
from umt.tokenizers.base import NeuralTokenizer
from umt.vocab import VocabConfig, Vocabulary, default_vocabulary

HOP = 512


@pytest.fixture(scope="module")
def codec() -> DAC:
    torch.manual_seed(0)
    model = DAC(DACConfig.tiny(codebook_size=1024)).eval()
    with torch.no_grad():  # spread the codebooks so codes are sensitive to any change in the input
        for name, parameter in model.named_parameters():
            if "codebook" in name:
                parameter.copy_(torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module")
def long_audio() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, 1, HOP * 60 + 100, generator=generator) * 0.3


def test_implements_protocol(codec):
    tokenizer = AudioTokenizer(codec)
    assert isinstance(tokenizer, NeuralTokenizer) and tokenizer.modality == "audio"
    assert len(tokenizer.fingerprint) == 64


def test_tokenize_rows_and_detokenize(codec):
    vocab = default_vocabulary()
    tokenizer = AudioTokenizer(codec)
    audio = torch.randn(1, HOP * 5 + 3) * 0.3
    rows = tokenizer.tokenize(audio, vocab)
    assert rows.shape == (6, vocab.num_codebooks) and rows.dtype == np.int64
    codes = codec.encode(audio[None])[0].T.numpy()
    assert np.array_equal(rows, vocab.codes_to_ids("audio", codes))
    for k in range(4):
        assert all(vocab.codebook_range("audio", k).contains(int(i)) for i in rows[:, k])
    decoded = tokenizer.detokenize(rows, vocab)
    assert decoded.shape == (1, 6 * HOP)
    assert torch.allclose(decoded, codec.decode(torch.from_numpy(codes.T)[None])[0])


def test_vocabulary_mismatch_is_refused():
    two = AudioTokenizer(DAC(DACConfig.tiny(n_codebooks=2)))
    with pytest.raises(ValueError, match="codebooks"):
        two.tokenize(torch.zeros(1, 600), default_vocabulary())
    big = AudioTokenizer(DAC(DACConfig.tiny(codebook_size=2048)))
    with pytest.raises(ValueError, match="codes"):
        big.tokenize(torch.zeros(1, 600), default_vocabulary())


def test_prefix_of_codebooks_serves_smaller_vocabulary(codec):
    vocab = Vocabulary(VocabConfig(audio_codebooks=2))
    audio = torch.randn(1, 2000) * 0.3
    rows = AudioTokenizer(codec).tokenize(audio, vocab)
    all_codes = codec.encode(audio[None])[0].T.numpy()  # [4 frames, 4 codebooks]
    assert rows.shape == (4, vocab.num_codebooks)
    assert np.array_equal(vocab.ids_to_codes("audio", rows), all_codes[:, :2])


def test_chunked_codes_equal_whole_file_codes(codec, long_audio):
    """With context >= the receptive half-width (8 frames) the measured margin is 0 frames."""
    whole = codec.encode(long_audio)
    assert whole.shape[-1] == 61
    for chunk_frames in (7, 10, 32):
        assert torch.equal(encode_chunked(codec, long_audio, chunk_frames, context_frames=16), whole)
    assert torch.equal(encode_chunked(codec, long_audio, 10, context_frames=8), whole)
    tokenizer = AudioTokenizer(codec, chunk_frames=9, context_frames=16)
    assert torch.equal(tokenizer.encode(long_audio[0]), whole)


@pytest.mark.parametrize("context_frames", [0, 2])
def test_short_context_only_disturbs_frames_near_chunk_borders(codec, long_audio, context_frames):
    whole = codec.encode(long_audio)
    chunk = 10
    chunked = encode_chunked(codec, long_audio, chunk, context_frames)
    differing = (chunked != whole).any(dim=1)[0].nonzero().flatten().tolist()
    assert differing, "too little context should change some codes (else this test proves nothing)"
    margin = math.ceil(codec.receptive_half_width() / HOP)  # 8 frames
    total = whole.shape[-1]
    for frame in differing:
        start = frame // chunk * chunk
        stop = min(start + chunk, total)
        to_border = min(frame - start if start > 0 else total, stop - 1 - frame if stop < total else total)
        assert to_border < margin - context_frames, (frame, to_border)


def test_token_t_covers_samples_of_frame_t(codec, long_audio):
    """Dropping the first k * 512 samples drops exactly the first k frames (away from the edges)."""
    whole = codec.encode(long_audio)
    margin = math.ceil(codec.receptive_half_width() / HOP)
    for k in (1, 3):
        later = codec.encode(long_audio[..., k * HOP :])
        assert torch.equal(later[..., margin:-margin], whole[..., k + margin : -margin])
    moved = codec.encode(long_audio[..., 200:])  # not a hop multiple: the codes do change
    assert not torch.equal(moved[..., margin:-margin], whole[..., margin:-margin])


def test_variants_are_nine_shifts(codec):
    tokenizer = AudioTokenizer(codec)
    audio = torch.arange(1, 101, dtype=torch.float32)[None]
    variants = tokenizer.variants(audio)
    assert len(variants) == 9 and SHIFT_SAMPLES[0] == 0 and torch.equal(variants[0], audio)
    assert sorted(SHIFT_SAMPLES) == list(range(-20, 21, 5))
    assert all(variant.shape == audio.shape for variant in variants)
    delayed = shift_audio(audio, 5)
    assert torch.equal(delayed[0, :5], torch.zeros(5)) and torch.equal(delayed[0, 5:], audio[0, :-5])
    advanced = shift_audio(audio, -20)
    assert torch.equal(advanced[0, :80], audio[0, 20:]) and torch.equal(advanced[0, 80:], torch.zeros(20))


def _tone(rate: int, seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.4 * np.sin(2 * np.pi * 441 * t)
    return np.stack([mono] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize(("suffix", "fmt"), [(".wav", "WAV"), (".flac", "FLAC"), (".mp3", "MP3")])
def test_load_resamples_to_44k_mono(tmp_path, suffix, fmt):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, _tone(22050, 0.5), 22050, format=fmt)
    audio = load_audio(path)
    assert audio.dtype == torch.float32 and audio.shape[0] == 1
    assert abs(audio.shape[1] - 22050) < 2000  # mp3 adds encoder delay / padding
    spectrum = np.abs(np.fft.rfft(audio[0, 2000:18000].numpy()))
    peak_hz = spectrum.argmax() * 44100 / 16000
    assert abs(peak_hz - 441) < 5


def test_bad_audio_raises_input_error_naming_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(InputError, match=r"corrupt\.wav"):
        load_audio(corrupt)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0, 1), dtype=np.float32), 44100)
    with pytest.raises(InputError, match=r"empty\.wav: audio file holds no samples"):
        load_audio(empty)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    with pytest.raises(InputError, match=r"zero\.flac"):
        load_audio(zero_bytes)
    with pytest.raises(InputError, match="no such audio file"):
        load_audio(tmp_path / "missing.mp3")


def test_save_and_load_pretrained_round_trip(tmp_path, codec, long_audio):
    tokenizer = AudioTokenizer(codec, chunk_frames=12, context_frames=16)
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fingerprint.txt", "model.safetensors"]
    restored = AudioTokenizer.from_pretrained(folder)
    assert restored.fingerprint == tokenizer.fingerprint
    assert (restored.chunk_frames, restored.context_frames) == (12, 16)
    assert torch.equal(restored.encode(long_audio), tokenizer.encode(long_audio))


def test_from_pretrained_refuses_bad_folders(tmp_path, codec):
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        AudioTokenizer.from_pretrained(tmp_path / "nowhere")
    folder = tmp_path / "tok"
    AudioTokenizer(codec).save_pretrained(folder)
    weights = (folder / "model.safetensors").read_bytes()

    (folder / "model.safetensors").write_bytes(weights[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="hash"):
        AudioTokenizer.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(weights)

    config = json.loads((folder / "config.json").read_text())
    mismatched = {**config, "codec": {**config["codec"], "n_codebooks": 3}}
    (folder / "config.json").write_text(json.dumps(mismatched))
    with pytest.raises(CheckpointError, match="do not match"):
        AudioTokenizer.from_pretrained(folder)

    (folder / "config.json").write_text(json.dumps({**config, "chunk_frames": 99}))
    with pytest.raises(CheckpointError, match="fingerprint"):
        AudioTokenizer.from_pretrained(folder)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"corrupt config\.json"):
        AudioTokenizer.from_pretrained(folder)

    (folder / "config.json").write_text(json.dumps({**config, "format": "something-else"}))
    with pytest.raises(CheckpointError, match="format"):
        AudioTokenizer.from_pretrained(folder)


def test_save_pretrained_refuses_to_overwrite_a_folder_that_is_not_a_tokenizer(tmp_path, codec):
    from umt.errors import UserError

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"busy: exists and is not a tokenizer folder; refusing"):
        AudioTokenizer(codec).save_pretrained(busy)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("a file")
    with pytest.raises(UserError, match="refusing to overwrite"):
        AudioTokenizer(codec).save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "a file"

    empty = tmp_path / "empty"
    empty.mkdir()
    AudioTokenizer(codec, chunk_frames=12).save_pretrained(empty)  # an empty folder is fine
    AudioTokenizer(codec, chunk_frames=7).save_pretrained(empty)  # so is a tokenizer folder
    assert AudioTokenizer.from_pretrained(empty).chunk_frames == 7
