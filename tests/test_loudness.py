"""Integrated loudness (ITU-R BS.1770-4) and the audio tokenizer's loudness normalisation.

``REFERENCE`` holds what descript-audiotools' ``Meter`` (0.7.2, with scipy's ``lfilter`` standing
in for torchaudio's, which has no CPU build here) measured, outside this project, on the signals
:func:`_signal` makes: the tokens U-MusT trained on were made after that meter's normalisation
(``DAC.compress``, -16 LUFS).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umt.tokenizers.loudness import MIN_LOUDNESS, integrated_loudness, normalise_loudness

REFERENCE = [  # (rate, seconds, amplitude, LUFS by audiotools)
    (44100, 3.0, 0.3, -13.08062),
    (44100, 0.3, 0.05, -28.7751),
    (22050, 7.3, 0.9, -2.92891),
    (44100, 20.0, 0.01, -41.86876),
]


def _signal(rate: int, seconds: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A 440 Hz tone swelling at 0.7 Hz, with noise, its first fifth 60 dB quieter (for the gates)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    x = (tone + amplitude * 0.3 * rng.standard_normal(len(t))).astype(np.float32)
    x[: len(x) // 5] *= 0.001
    return x


def test_the_meter_agrees_with_the_one_the_paper_s_tokens_were_made_with():
    rng = np.random.default_rng(0)  # one generator, drawn in this order, as when recorded
    for rate, seconds, amplitude, expected in REFERENCE:
        assert integrated_loudness(_signal(rate, seconds, amplitude, rng), rate) == pytest.approx(
            expected, abs=1e-4
        )


@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_full_scale_997_hz_sine_is_minus_3_01_lufs(rate):
    """BS.1770's calibration: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS. The filters as
    pyloudnorm (hence audiotools) designs them read -3.052 at both rates (pyloudnorm 0.2.0 gives
    the same), 0.04 dB off; the tokens were made with those filters, so these are kept."""
    t = np.arange(5 * rate) / rate
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), rate) == pytest.approx(-3.052, abs=1e-3)


def test_silence_is_the_floor_and_normalising_reaches_the_target_with_peaks_at_most_1():
    assert integrated_loudness(np.zeros(44100), 44100) == MIN_LOUDNESS
    rng = np.random.default_rng(1)
    quiet = 0.01 * rng.standard_normal(3 * 44100).astype(np.float32)
    louder = normalise_loudness(quiet, 44100, -16.0)
    assert integrated_loudness(louder, 44100) == pytest.approx(-16.0, abs=1e-3)
    clicks = np.zeros(44100, np.float32)
    clicks[::4410] = 0.5  # sparse: reaching -16 LUFS would push the peaks far above 1
    limited = normalise_loudness(clicks, 44100, -16.0)
    assert np.abs(limited).max() == pytest.approx(1.0)


def test_a_tokenizer_with_loudness_db_encodes_the_normalised_audio_and_keeps_the_setting(tmp_path):
    from umt.models.dac import DAC, DACConfig
    from umt.tokenizers.audio import AudioTokenizer

    torch.manual_seed(0)
    codec = DAC(DACConfig.tiny())
    plain, levelled = AudioTokenizer(codec), AudioTokenizer(codec, loudness_db=-16.0)
    audio = 0.01 * torch.randn(1, 44100)
    expected = plain.encode(torch.from_numpy(normalise_loudness(audio[0].numpy(), 44100, -16.0))[None])
    assert torch.equal(levelled.encode(audio), expected)
    assert not torch.equal(plain.encode(audio), expected)
    assert levelled.fingerprint != plain.fingerprint  # other codes, another fingerprint
    assert "loudness_db" not in plain.config_dict()  # folders made before the option keep theirs
    levelled.save_pretrained(tmp_path / "tok")
    again = AudioTokenizer.from_pretrained(tmp_path / "tok")
    assert again.loudness_db == -16.0 and again.fingerprint == levelled.fingerprint
