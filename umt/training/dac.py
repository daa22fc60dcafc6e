"""Training recipe for the DAC audio tokenizer (Lightning, manual optimisation: critic then generator).

Follows descript-audio-codec's ``scripts/train.py`` and ``conf/base.yml``: AdamW (lr 1e-4, betas
(0.8, 0.99)) with ExponentialLR (gamma 0.999996) for both generator and discriminator; the
discriminator step (least squares, grad-norm clip 10) before the generator step (grad-norm clip 1000)
with loss ``15 mel + 2 feature matching + 1 adversarial + 0.25 commitment + 1 codebook``.
Excerpts are 0.38 s, peak-normalised (the reference normalises to -16 dB LUFS; a loudness meter is
not reimplemented here). The model is built from the ``model`` section of the config
(``conf/tokenizer/dac.yaml``); :meth:`DACTrainingModule.export_tokenizer` writes a
:class:`umt.tokenizers.audio.AudioTokenizer` folder.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset

from umt.models.dac import DAC, DACConfig
from umt.models.dac_discriminators import (
    Discriminator,
    MelSpectrogramLoss,
    discriminator_loss,
    generator_loss,
)

DEFAULT_LAMBDAS: dict[str, float] = {
    "mel/loss": 15.0,
    "adv/feat_loss": 2.0,
    "adv/gen_loss": 1.0,
    "vq/commitment_loss": 0.25,
    "vq/codebook_loss": 1.0,
}


def _plain(config: Mapping | None) -> dict:
    """An OmegaConf / Hydra config or a mapping to plain Python containers."""
    if config is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(config)


class DACTrainingModule(L.LightningModule):
    """Trains :class:`umt.models.dac.DAC` with the DAC critics. Batches are audio ``[B, 1, T]``
    (or ``{"audio": ...}``) at the model's sample rate.

    Config sections (all optional but ``model``): ``model`` (:class:`DACConfig` fields),
    ``discriminator`` (periods, fft_sizes, bands), ``mel_loss`` (:class:`MelSpectrogramLoss` args),
    ``lambdas``, ``optimizer`` (lr, betas, gamma), ``grad_clip`` (generator, discriminator).
    """

    def __init__(self, config: Mapping) -> None:
        super().__init__()
        config = _plain(config)
        self.save_hyperparameters({"config": config})
        self.model_config = DACConfig.from_kwargs(_plain(config.get("model")))
        self.generator = DAC(self.model_config)
        sample_rate = self.model_config.sample_rate
        self.discriminator = Discriminator(**_plain(config.get("discriminator")), sample_rate=sample_rate)
        self.mel_loss = MelSpectrogramLoss(**_plain(config.get("mel_loss")), sample_rate=sample_rate)
        self.lambdas = {**DEFAULT_LAMBDAS, **_plain(config.get("lambdas"))}
        self.optimizer_config = {"lr": 1e-4, "betas": (0.8, 0.99), "gamma": 0.999996}
        self.optimizer_config.update(_plain(config.get("optimizer")))
        self.grad_clip = {"generator": 1e3, "discriminator": 10.0, **_plain(config.get("grad_clip"))}
        self.automatic_optimization = False

    def configure_optimizers(self):
        lr, betas, gamma = (self.optimizer_config[k] for k in ("lr", "betas", "gamma"))
        opt_g = torch.optim.AdamW(self.generator.parameters(), lr=lr, betas=tuple(betas))
        opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=lr, betas=tuple(betas))
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma)
        return [opt_g, opt_d], [sched_g, sched_d]

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        audio = batch["audio"] if isinstance(batch, Mapping) else batch
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        out = self.generator(audio)
        recon = out["audio"]

        # Critic step on detached reconstructions.
        disc_loss = discriminator_loss(self.discriminator(recon.detach()), self.discriminator(audio))
        opt_d.zero_grad()
        self.manual_backward(disc_loss)
        grad_norm_d = torch.nn.utils.clip_grad_norm_(
            self.discriminator.parameters(), self.grad_clip["discriminator"]
        )
        opt_d.step()
        sched_d.step()

        # Generator step: the critic's real-audio maps are only targets, so no graph for them.
        with torch.no_grad():
            real_maps = self.discriminator(audio)
        gen_loss, feat_loss = generator_loss(self.discriminator(recon), real_maps)
        losses = {
            "mel/loss": self.mel_loss(recon, audio),
            "adv/gen_loss": gen_loss,
            "adv/feat_loss": feat_loss,
            "vq/commitment_loss": out["vq/commitment_loss"],
            "vq/codebook_loss": out["vq/codebook_loss"],
        }
        total = sum(self.lambdas[name] * value for name, value in losses.items())
        opt_g.zero_grad()
        self.manual_backward(total)
        grad_norm_g = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), self.grad_clip["generator"])
        opt_g.step()
        sched_g.step()

        logged = {
            **{k: v.detach() for k, v in losses.items()},
            "loss": total.detach(),
            "adv/disc_loss": disc_loss.detach(),
            "other/grad_norm": grad_norm_g.detach(),
            "other/grad_norm_d": grad_norm_d.detach(),
        }
        self.log_dict({f"train/{k}": v for k, v in logged.items()}, prog_bar=False, batch_size=audio.shape[0])
        return logged

    def export_tokenizer(
        self, directory: str | Path, chunk_frames: int = 512, context_frames: int = 16
    ) -> None:
        """Write the generator as an :class:`AudioTokenizer` folder (``from_pretrained``-loadable)."""
        from umt.tokenizers.audio import AudioTokenizer

        generator = DAC(self.model_config)
        generator.load_state_dict(self.generator.state_dict())
        AudioTokenizer(generator, chunk_frames, context_frames).save_pretrained(directory)


class AudioExcerptDataset(Dataset):
    """Random fixed-length excerpts ``[1, T]`` from audio files, peak-normalised to ``peak``.

    ``length`` items per epoch; each draws a random file and offset (deterministic per index and
    ``seed``). Files are loaded and resampled once, lazily, through :func:`umt.tokenizers.audio.load_audio`.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        duration: float = 0.38,
        sample_rate: int = 44100,
        length: int = 10_000,
        peak: float = 0.9,
        seed: int = 0,
    ) -> None:
        if not files:
            raise ValueError("no audio files to train on")
        self.files = [Path(f) for f in files]
        self.samples = round(duration * sample_rate)
        self.sample_rate, self.length, self.peak, self.seed = sample_rate, length, peak, seed
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.length

    def _audio(self, index: int) -> torch.Tensor:
        from umt.tokenizers.audio import load_audio

        if index not in self._cache:
            self._cache[index] = load_audio(self.files[index], self.sample_rate)
        return self._cache[index]

    def __getitem__(self, item: int) -> torch.Tensor:
        rng = random.Random(self.seed * 1_000_003 + item)
        audio = self._audio(rng.randrange(len(self.files)))
        if audio.shape[-1] < self.samples:
            audio = torch.nn.functional.pad(audio, (0, self.samples - audio.shape[-1]))
        offset = rng.randrange(audio.shape[-1] - self.samples + 1)
        excerpt = audio[:, offset : offset + self.samples]
        return excerpt * (self.peak / excerpt.abs().max().clamp_min(1e-5))
