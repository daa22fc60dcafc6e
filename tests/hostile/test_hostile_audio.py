"""Hostile and odd recordings for the commands that read audio (``umt translate`` AMT and
audio-to-image)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests._subprocess import umt_with_peak
from tests.hostile._cases import check_outcomes, translate_each


def _wav_header(rate: int, frames: int, channels: int = 1, bits: int = 16) -> bytes:
    data = frames * channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data)
    )


def _silent_wav(path: Path, hours: float, rate: int = 44100) -> Path:
    """A valid 16-bit WAV of ``hours`` of silence, written sparse: its zeros take no disk space."""
    frames = int(hours * 3600 * rate)
    with path.open("wb") as file:
        file.write(_wav_header(rate, frames))
        file.truncate(44 + 2 * frames)
    return path


def _tone(seconds: float, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _make_inputs(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    root.mkdir(parents=True, exist_ok=True)
    refused = {
        "zero_bytes": root / "zero.wav",
        "header_only": root / "header_only.wav",
        "not_audio": root / "letter.wav",
        "truncated_flac": root / "truncated.flac",
        "truncated_mp3": root / "truncated.mp3",
        "nan": root / "nan.wav",
        "inf": root / "inf.wav",
        "three_hours": _silent_wav(root / "three_hours.wav", hours=3.0),
    }
    refused["zero_bytes"].write_bytes(b"")
    refused["header_only"].write_bytes(_wav_header(44100, 0))
    refused["not_audio"].write_text("Dear reader, this is a letter.\n")
    flac = io.BytesIO()
    soundfile.write(flac, _tone(1.0), 44100, format="FLAC")
    refused["truncated_flac"].write_bytes(flac.getvalue()[:100])
    refused["truncated_mp3"].write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0f" + b"\xff\xfb\x90" + b"\x00" * 20)
    tone = _tone(1.0)
    tone[100] = np.nan
    soundfile.write(str(refused["nan"]), tone, 44100, subtype="FLOAT")
    tone[100] = np.inf
    soundfile.write(str(refused["inf"]), tone, 44100, subtype="FLOAT")
    processed = {}
    for bits in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        processed[bits] = root / f"tone_{bits.lower()}.wav"
        soundfile.write(str(processed[bits]), _tone(1.0), 44100, subtype=bits)
    processed["stereo"] = root / "stereo.wav"
    soundfile.write(str(processed["stereo"]), np.stack([_tone(1.0), -_tone(1.0) * 0.5], axis=1), 44100)
    processed["six_channels"] = root / "six_channels.wav"
    soundfile.write(str(processed["six_channels"]), np.tile(_tone(0.5)[:, None], (1, 6)), 44100)
    processed["one_sample"] = root / "one_sample.wav"
    soundfile.write(str(processed["one_sample"]), np.array([0.1], np.float32), 44100)
    processed["eight_khz"] = root / "eight_khz.wav"
    soundfile.write(str(processed["eight_khz"]), _tone(1.0, rate=8000), 8000)
    processed["one_hertz"] = root / "one_hertz.wav"  # 4 samples at 1 Hz: 4 s, resampled
    soundfile.write(str(processed["one_hertz"]), _tone(1.0)[:4], 1, subtype="PCM_16")
    processed["odd_rate"] = root / "odd_rate.wav"  # 15248452 Hz: a fuzzed header's rate (took 21 s)
    soundfile.write(str(processed["odd_rate"]), _tone(0.5)[:21818], 15_248_452, subtype="PCM_16")
    processed["one_megahertz"] = root / "one_megahertz.wav"
    soundfile.write(str(processed["one_megahertz"]), _tone(0.05, rate=1_000_000), 1_000_000)
    return refused, processed


@pytest.mark.parametrize("task", ["amt", "a2i"])
def test_hostile_audio_is_refused_one_line_each_and_odd_audio_is_processed(model, tmp_path, capsys, task):
    refused, processed = _make_inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    status, errors = translate_each(model, task, [*refused.values(), *processed.values()], out, capsys)
    assert status == 1
    check_outcomes(out, errors, refused, processed)
    assert "empty file" in errors[refused["zero_bytes"]]
    assert "NaN" in errors[refused["nan"]] or "not finite" in errors[refused["nan"]]
    assert "lasts 3.0 h" in errors[refused["three_hours"]]


def test_three_hours_of_silence_are_refused_from_the_header_in_bounded_memory(model, tmp_path):
    """The 950 MB recording is judged by its header: refused with one line and a small peak."""
    path = _silent_wav(tmp_path / "three_hours.wav", hours=3.0)
    argv = ["translate", "--checkpoint", str(model), "--task", "amt", str(path), "-o", str(tmp_path / "out")]
    done, peak_mib = umt_with_peak([*argv, "--quiet"], timeout=120)
    assert done.returncode == 1, done.stderr
    assert "three_hours.wav: lasts 3.0 h; audio is read for at most 2 h" in done.stderr
    assert peak_mib < 600, f"peak RSS {peak_mib:.0f} MiB"


def test_a_long_stereo_file_is_mixed_block_by_block_and_equals_the_whole_file_mix(tmp_path, monkeypatch):
    from umt.tokenizers import audio

    monkeypatch.setattr(audio, "_READ_BLOCK_FRAMES", 1000)  # 44 blocks and a remainder
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(44_123, 2)).astype(np.float32)
    soundfile.write(str(tmp_path / "stereo.wav"), stereo, 44100, subtype="FLOAT")
    mono = audio.load_audio(tmp_path / "stereo.wav")
    assert mono.shape == (1, 44_123)
    np.testing.assert_array_equal(mono[0].numpy(), stereo.mean(axis=1))
    stereo[40_500, 1] = np.inf  # in a late block
    soundfile.write(str(tmp_path / "late_inf.wav"), stereo, 44100, subtype="FLOAT")
    with pytest.raises(audio.InputError, match=r"late_inf\.wav: audio holds NaN or infinite samples"):
        audio.load_audio(tmp_path / "late_inf.wav")
