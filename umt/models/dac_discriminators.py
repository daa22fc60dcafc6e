"""DAC's training critics and losses as pure PyTorch (no audiotools / torchaudio).

* :class:`Discriminator`: multi-period (MPD, periods 2, 3, 5, 7, 11) and multi-band multi-resolution
  complex-STFT (MRD, windows 2048 / 1024 / 512, 5 bands) discriminators, with the reference's module
  names. (The reference's optional multi-scale waveform discriminator is off in its ``base.yml``,
  ``rates: []``, and is not implemented.) Layer widths default to the reference's
  (:data:`MPD_CHANNELS`, :data:`MRD_CHANNELS`, state-dict compatible with it); narrower ones keep
  small test and demo models from spending their time on the critics.
* :class:`MelSpectrogramLoss`: multi-scale log-mel L1 (7 scales, windows 32..2048, 5..320 mels,
  ``pow=1``, ``mag_weight=0`` as ``conf/base.yml``), with a Slaney mel filterbank built here.
* :func:`discriminator_loss` / :func:`generator_loss`: least-squares GAN and feature matching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.models.dac import WNConv2d

BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
MPD_CHANNELS: tuple[int, ...] = (32, 128, 512, 1024, 1024)
"""Output channels of the period discriminator's five convolutions (the reference's)."""
MRD_CHANNELS = 32
"""Channels of every band convolution of the spectrogram discriminator (the reference's)."""
FeatureMaps = list[torch.Tensor]


def _conv2d(*args, act: bool = True, **kwargs) -> nn.Module:
    conv = WNConv2d(*args, **kwargs)
    return nn.Sequential(conv, nn.LeakyReLU(0.1)) if act else conv


def _check_widths(channels: Sequence[int], count: int, name: str) -> tuple[int, ...]:
    widths = tuple(int(c) for c in channels)
    if len(widths) != count or min(widths) <= 0:
        raise ValueError(f"{name} needs {count} positive widths, got {list(channels)}")
    return widths


class MPD(nn.Module):
    """Period discriminator: audio ``[B, 1, T]`` folded to ``[B, 1, T / p, p]``, 2-D convs along time."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS) -> None:
        super().__init__()
        self.period = period
        widths = _check_widths(channels, 5, "mpd_channels")
        inputs = (1, *widths[:-1])
        strides = ((3, 1),) * 4 + (1,)
        self.convs = nn.ModuleList(
            _conv2d(c_in, c_out, (5, 1), stride, padding=(2, 0))
            for c_in, c_out, stride in zip(inputs, widths, strides)
        )
        self.conv_post = _conv2d(widths[-1], 1, kernel_size=(3, 1), padding=(1, 0), act=False)

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        x = F.pad(x, (0, self.period - x.shape[-1] % self.period), mode="reflect")
        x = x.reshape(x.shape[0], x.shape[1], -1, self.period)
        feature_maps = []
        for layer in self.convs:
            x = layer(x)
            feature_maps.append(x)
        feature_maps.append(self.conv_post(x))
        return feature_maps


def stft(
    audio: torch.Tensor, window_length: int, hop_length: int, match_stride: bool = False
) -> torch.Tensor:
    """Complex STFT ``[B, 1, T] -> [B, 1, F, frames]`` with a periodic Hann window and reflect padding.

    ``match_stride`` pads so that there are exactly ``ceil(T / hop)`` frames (as audiotools does).
    """
    batch, channels, length = audio.shape
    signal = audio.reshape(batch * channels, length)
    if match_stride:
        right_pad = math.ceil(length / hop_length) * hop_length - length
        pad = (window_length - hop_length) // 2
        signal = F.pad(signal[:, None], (pad, pad + right_pad), mode="reflect")[:, 0]
    window = torch.hann_window(window_length, periodic=True, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(
        signal, n_fft=window_length, hop_length=hop_length, window=window, center=True,
        pad_mode="reflect", return_complex=True,
    )  # fmt: skip
    if match_stride:
        spec = spec[..., 2:-2]
    return spec.reshape(batch, channels, *spec.shape[1:])


class MRD(nn.Module):
    """Multi-band complex-spectrogram discriminator at one STFT resolution."""

    def __init__(
        self,
        window_length: int,
        hop_factor: float = 0.25,
        sample_rate: int = 44100,
        bands: Sequence[Sequence[float]] = BANDS,
        channels: int = MRD_CHANNELS,
    ) -> None:
        super().__init__()
        self.window_length = window_length
        self.hop_length = int(window_length * hop_factor)
        self.sample_rate = sample_rate
        n_bins = window_length // 2 + 1
        self.bands = [(int(low * n_bins), int(high * n_bins)) for low, high in bands]
        (channels,) = _check_widths([channels], 1, "mrd_channels")

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    _conv2d(2, channels, (3, 9), (1, 1), padding=(1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _conv2d(channels, channels, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = _conv2d(channels, 1, (3, 3), (1, 1), padding=(1, 1), act=False)

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        spec = torch.view_as_real(stft(x, self.window_length, self.hop_length, match_stride=True))
        spec = spec[:, 0].permute(0, 3, 2, 1)  # [B, F, frames, 2] -> [B, 2, frames, F]
        feature_maps, outputs = [], []
        for (low, high), layers in zip(self.bands, self.band_convs):
            band = spec[..., low:high]
            for layer in layers:
                band = layer(band)
                feature_maps.append(band)
            outputs.append(band)
        feature_maps.append(self.conv_post(torch.cat(outputs, dim=-1)))
        return feature_maps


class Discriminator(nn.Module):
    """All critics: audio ``[B, 1, T]`` to one list of feature maps per critic (logits last).

    ``mpd_channels`` (5 widths) and ``mrd_channels`` set the critics' widths; the defaults are the
    reference's (42.5 M parameters with its 5 periods and 3 resolutions).
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        fft_sizes: Sequence[int] = (2048, 1024, 512),
        sample_rate: int = 44100,
        bands: Sequence[Sequence[float]] = BANDS,
        mpd_channels: Sequence[int] = MPD_CHANNELS,
        mrd_channels: int = MRD_CHANNELS,
    ) -> None:
        super().__init__()
        critics: list[nn.Module] = [MPD(p, mpd_channels) for p in periods]
        critics += [MRD(f, sample_rate=sample_rate, bands=bands, channels=mrd_channels) for f in fft_sizes]
        self.discriminators = nn.ModuleList(critics)

    @staticmethod
    def preprocess(audio: torch.Tensor) -> torch.Tensor:
        """Remove the DC offset and peak-normalise to 0.8."""
        audio = audio - audio.mean(dim=-1, keepdim=True)
        return 0.8 * audio / (audio.abs().max(dim=-1, keepdim=True)[0] + 1e-9)

    def forward(self, audio: torch.Tensor) -> list[FeatureMaps]:
        audio = self.preprocess(audio)
        return [critic(audio) for critic in self.discriminators]


def discriminator_loss(fake: list[FeatureMaps], real: list[FeatureMaps]) -> torch.Tensor:
    """Least squares: fake logits to 0, real logits to 1 (summed over critics)."""
    loss = fake[0][-1].new_zeros(())
    for fake_maps, real_maps in zip(fake, real):
        loss = loss + torch.mean(fake_maps[-1] ** 2) + torch.mean((1 - real_maps[-1]) ** 2)
    return loss


def generator_loss(fake: list[FeatureMaps], real: list[FeatureMaps]) -> tuple[torch.Tensor, torch.Tensor]:
    """(least-squares adversarial loss, feature-matching L1 over every critic's hidden maps)."""
    adversarial = fake[0][-1].new_zeros(())
    feature = fake[0][-1].new_zeros(())
    for fake_maps, real_maps in zip(fake, real):
        adversarial = adversarial + torch.mean((1 - fake_maps[-1]) ** 2)
        for fake_map, real_map in zip(fake_maps[:-1], real_maps[:-1]):
            feature = feature + F.l1_loss(fake_map, real_map.detach())
    return adversarial, feature


# ----------------------------------------------------------------------------- mel loss
def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mel = freq / (200.0 / 3)
    log_region = freq >= 1000.0
    mel = np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    freq = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), freq)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Slaney-normalised triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (librosa's default)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    return weights.astype(np.float32)


class MelSpectrogramLoss(nn.Module):
    """Multi-scale mel-spectrogram distance between estimate and reference audio ``[B, 1, T]``."""

    def __init__(
        self,
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        sample_rate: int = 44100,
        clamp_eps: float = 1e-5,
        mag_weight: float = 0.0,
        log_weight: float = 1.0,
        pow: float = 1.0,
        mel_fmin: Sequence[float] | None = None,
        mel_fmax: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        if len(n_mels) != len(window_lengths):
            raise ValueError("n_mels and window_lengths need one entry per scale")
        fmins = list(mel_fmin) if mel_fmin is not None else [0.0] * len(n_mels)
        fmaxs = list(mel_fmax) if mel_fmax is not None else [None] * len(n_mels)
        self.window_lengths = list(window_lengths)
        self.clamp_eps, self.mag_weight, self.log_weight, self.pow = clamp_eps, mag_weight, log_weight, pow
        for index, (mels, window, fmin, fmax) in enumerate(zip(n_mels, window_lengths, fmins, fmaxs)):
            filters = torch.from_numpy(mel_filterbank(sample_rate, window, mels, fmin, fmax))
            self.register_buffer(f"mel_basis_{index}", filters, persistent=False)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        loss = estimate.new_zeros(())
        for index, window in enumerate(self.window_lengths):
            basis = getattr(self, f"mel_basis_{index}")
            mels = []
            for audio in (estimate, reference):
                magnitude = stft(audio, window, window // 4).abs()  # [B, 1, F, frames]
                mels.append(torch.einsum("mf,bcft->bcmt", basis, magnitude))
            est, ref = mels
            loss = loss + self.log_weight * F.l1_loss(
                est.clamp(self.clamp_eps).pow(self.pow).log10(),
                ref.clamp(self.clamp_eps).pow(self.pow).log10(),
            )
            if self.mag_weight:
                loss = loss + self.mag_weight * F.l1_loss(est, ref)
        return loss
