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
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from umt.errors import CheckpointError, UserError
from umt.modalities.audio import AUDIO
from umt.models.dac import DAC, DACConfig
from umt.models.dac_discriminators import (
    Discriminator,
    MelSpectrogramLoss,
    discriminator_loss,
    generator_loss,
)
from umt.tokenizers.audio import AudioTokenizer, load_audio
from umt.training.train import _atomic_checkpoint_io
from umt.utils.io import read_path_list

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
    ``adversarial`` (default true), ``discriminator`` (periods, fft_sizes, bands, mpd_channels,
    mrd_channels), ``mel_loss``
    (:class:`MelSpectrogramLoss` args), ``lambdas``, ``optimizer`` (lr, betas, gamma), ``grad_clip``
    (generator, discriminator).
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
        # Not in DAC's recipe: `adversarial: false` trains on the mel and VQ losses alone (about
        # twice as many iterations a minute on a CPU, for a short run the critics cannot yet help).
        self.adversarial = bool(config.get("adversarial", True))
        self.automatic_optimization = False
        # Not in DAC's recipe: every `every` steps, codes no frame chose since the last restart are
        # re-seeded from this batch's projected latents. Short runs of small codecs otherwise
        # collapse onto one code per codebook (and then every sound has the same tokens).
        self.code_restart_every = int(_plain(config.get("code_restart")).get("every") or 0)
        usage = torch.zeros(self.model_config.n_codebooks, self.model_config.codebook_size)
        self.register_buffer("code_usage", usage)  # choices per code since the last restart

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

        losses = {
            "mel/loss": self.mel_loss(recon, audio),
            "vq/commitment_loss": out["vq/commitment_loss"],
            "vq/codebook_loss": out["vq/codebook_loss"],
        }
        critic = {}
        opt_d.zero_grad()
        if self.adversarial:
            # Critic step on detached reconstructions.
            disc_loss = discriminator_loss(self.discriminator(recon.detach()), self.discriminator(audio))
            self.manual_backward(disc_loss)
            grad_norm_d = torch.nn.utils.clip_grad_norm_(
                self.discriminator.parameters(), self.grad_clip["discriminator"]
            )
            critic = {"adv/disc_loss": disc_loss.detach(), "other/grad_norm_d": grad_norm_d.detach()}
        # stepped without gradients too (a no-op), so that Lightning counts two steps an iteration
        opt_d.step()
        sched_d.step()
        if self.adversarial:
            # Generator terms against the updated critic (its step changed the weights in place, so
            # they must come after it); the real-audio maps are only targets, so no graph for them.
            with torch.no_grad():
                real_maps = self.discriminator(audio)
            losses["adv/gen_loss"], losses["adv/feat_loss"] = generator_loss(
                self.discriminator(recon), real_maps
            )
        total = sum(self.lambdas[name] * value for name, value in losses.items())
        opt_g.zero_grad()
        self.manual_backward(total)
        grad_norm_g = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), self.grad_clip["generator"])
        opt_g.step()
        sched_g.step()
        if self.code_restart_every:
            self._restart_unused_codes(out["codes"], out["latents"])

        logged = {
            **{k: v.detach() for k, v in losses.items()},
            **critic,
            "loss": total.detach(),
            "other/grad_norm": grad_norm_g.detach(),
        }
        self.log_dict({f"train/{k}": v for k, v in logged.items()}, prog_bar=False, batch_size=audio.shape[0])
        return logged

    @torch.no_grad()
    def _restart_unused_codes(self, codes: torch.Tensor, latents: torch.Tensor) -> None:
        """Count this batch's choices (codes ``[B, N, T]``); at every ``code_restart_every``-th step,
        set each codebook's unused codes to randomly drawn projected latents of the batch
        (latents ``[B, N * d, T]``, ``d`` = that codebook's dimension) and start counting anew."""
        for index in range(codes.shape[1]):
            self.code_usage[index] += torch.bincount(
                codes[:, index].reshape(-1), minlength=self.code_usage.shape[1]
            ).to(self.code_usage)
        if (self.global_step // 2) % self.code_restart_every != 0:  # two optimizer steps per iteration
            return
        offset = 0
        for index, quantizer in enumerate(self.generator.quantizer.quantizers):
            dim = quantizer.codebook_dim
            vectors = latents[:, offset : offset + dim].transpose(1, 2).reshape(-1, dim)
            offset += dim
            dead = (self.code_usage[index] == 0).nonzero().flatten()
            if len(dead):
                picks = torch.randint(len(vectors), (len(dead),), device=vectors.device)
                quantizer.codebook.weight[dead] = vectors[picks].to(quantizer.codebook.weight)
        self.code_usage.zero_()

    def export_tokenizer(
        self, directory: str | Path, chunk_frames: int = 512, context_frames: int = 16
    ) -> None:
        """Write the generator as an :class:`AudioTokenizer` folder (``from_pretrained``-loadable)."""

        generator = DAC(self.model_config)
        generator.load_state_dict(self.generator.state_dict())
        AudioTokenizer(generator, chunk_frames, context_frames).save_pretrained(directory)


class AudioExcerptDataset(Dataset):
    """Random fixed-length excerpts ``[1, T]`` from audio files, peak-normalised to ``peak`` (``None``:
    as recorded, for a codec that will tokenize audio at the level of its training files).

    ``length`` items per epoch; each draws a random file and offset (deterministic per index and
    ``seed``). Files are loaded and resampled lazily through :func:`umt.tokenizers.audio.load_audio`;
    each process (each loader worker) keeps the ``cache_files`` most recently used ones decoded, so
    memory stays bounded however many (or however long) the files are.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        duration: float = 0.38,
        sample_rate: int = 44100,
        length: int = 10_000,
        peak: float | None = 0.9,
        seed: int = 0,
        cache_files: int = 8,
    ) -> None:
        if not files:
            raise ValueError("no audio files to train on")
        self.files = [Path(f) for f in files]
        self.samples = round(duration * sample_rate)
        self.sample_rate, self.length, self.peak, self.seed = sample_rate, length, peak, seed
        self.cache_files = max(0, int(cache_files))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return self.length

    def _audio(self, index: int) -> torch.Tensor:
        """File ``index`` decoded, ``[1, T]`` at :attr:`sample_rate` (from the LRU cache when there)."""

        audio = self._cache.get(index)
        if audio is not None:
            self._cache.move_to_end(index)
            return audio
        audio = load_audio(self.files[index], self.sample_rate)
        if self.cache_files:
            self._cache[index] = audio
            while len(self._cache) > self.cache_files:
                self._cache.popitem(last=False)
        return audio

    def __getitem__(self, item: int) -> torch.Tensor:
        rng = random.Random(self.seed * 1_000_003 + item)
        audio = self._audio(rng.randrange(len(self.files)))
        if audio.shape[-1] < self.samples:
            audio = torch.nn.functional.pad(audio, (0, self.samples - audio.shape[-1]))
        offset = rng.randrange(audio.shape[-1] - self.samples + 1)
        excerpt = audio[:, offset : offset + self.samples]
        if self.peak is None:
            return excerpt
        return excerpt * (self.peak / excerpt.abs().max().clamp_min(1e-5))


AUDIO_SUFFIXES = AUDIO.suffixes


def list_audio_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Audio files from a folder (recursive), a manifest (``.txt``, one path a line, relative to the
    manifest's folder, ``#`` comments) or an explicit list. :class:`UserError` when there are none."""

    if isinstance(source, str | Path):
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif source.is_file():
            files = read_path_list(source)
        else:
            raise UserError("no such folder or manifest", source)
    else:
        files = [Path(p) for p in source]
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found", str(source))
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserError(f"listed audio file does not exist ({len(missing)} missing)", missing[0])
    return files


def resume_checkpoint(resume: str | Path | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint a run continues from: for ``"auto"``, ``<checkpoint_dir>/last.ckpt`` when it
    exists; ``None`` / ``""`` / ``"none"``: none; anything else is a path that must exist."""

    if resume in (None, "", "none"):
        return None
    if resume == "auto":
        last = checkpoint_dir / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        raise CheckpointError("no such checkpoint to resume from", resume)
    return str(resume)


def _log_version(logs: Path, ckpt_path: str | None) -> str:
    """``""`` (``logs/metrics.csv``) for a fresh run; ``resume-N`` for the N-th resumed one, so a
    resume does not overwrite the metrics logged before it."""
    if ckpt_path is None:
        return ""
    n = 1
    while (logs / f"resume-{n}").exists():
        n += 1
    return f"resume-{n}"


def train_dac(cfg: Mapping) -> Path:
    """Train a DAC as ``cfg`` (``conf/tokenizer/dac.yaml`` / ``dac_tiny.yaml``) says; export and
    return ``<output_dir>/tokenizer``.

    Besides the :class:`DACTrainingModule` sections, ``cfg`` holds ``data`` (``files``: folder /
    manifest / list of audio files; ``duration``, ``batch_size``, ``excerpts_per_epoch``,
    ``num_workers``), ``num_iters`` (generator updates), ``trainer`` (``accelerator``, ``devices``,
    ``precision``, ``max_time``, ``log_every_n_steps``, ``checkpoint_every_n_steps``),
    ``output_dir``, ``seed``, ``resume`` (``auto``: continue from ``<output_dir>/checkpoints/last.ckpt``
    when it exists; a path; or null) and ``tokenizer`` (``chunk_frames``, ``context_frames``).
    Checkpoints are written atomically, so a killed run rerun with the same command resumes.
    """

    cfg = _plain(cfg)
    seed = int(cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    data = dict(cfg.get("data") or {})
    module = DACTrainingModule(cfg)
    files = list_audio_files(data.get("files") or "")
    batch_size = int(data.get("batch_size", 72))
    dataset = AudioExcerptDataset(
        files,
        duration=float(data.get("duration", 0.38)),
        sample_rate=module.model_config.sample_rate,
        length=int(data.get("excerpts_per_epoch") or 1000 * batch_size),
        peak=data.get("peak", 0.9),
        seed=seed,
        cache_files=int(data.get("cache_files", 8)),
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # each index already draws a random file and offset
        num_workers=int(data.get("num_workers", 0)),
        drop_last=True,
        persistent_workers=int(data.get("num_workers", 0)) > 0,
    )
    output_dir = Path(cfg.get("output_dir") or "outputs/dac")
    checkpoint_dir = output_dir / "checkpoints"
    t = dict(cfg.get("trainer") or {})
    iterations = int(t.get("max_steps") or cfg.get("num_iters", 250_000))
    checkpoint = ModelCheckpoint(
        dirpath=str(checkpoint_dir),
        filename="step-{step:08d}",
        every_n_train_steps=int(t.get("checkpoint_every_n_steps", 5000)) * 2,
        save_top_k=int(t.get("keep_checkpoints", 1)),
        monitor="step",
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
    )
    ckpt_path = resume_checkpoint(cfg.get("resume", "auto"), checkpoint_dir)
    trainer = L.Trainer(
        # Manual optimisation with two optimizers: Lightning counts both steps in global_step.
        max_steps=2 * iterations,
        max_time=t.get("max_time"),
        max_epochs=-1,
        accelerator=t.get("accelerator", "auto"),
        devices=t.get("devices", "auto"),
        precision=t.get("precision", "32-true"),
        log_every_n_steps=int(t.get("log_every_n_steps", 50)),
        enable_progress_bar=bool(t.get("enable_progress_bar", True)),
        enable_model_summary=bool(t.get("enable_model_summary", True)),
        logger=CSVLogger(str(output_dir), name="logs", version=_log_version(output_dir / "logs", ckpt_path)),
        callbacks=[checkpoint],
        plugins=[_atomic_checkpoint_io()],
        default_root_dir=str(output_dir),
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        # Checkpoints after the optimizer steps are what a resume needs; Lightning warns regardless.
        warnings.filterwarnings("ignore", message=".*manual optimization and every_n_train_steps.*")
        trainer.fit(module, loader, ckpt_path=ckpt_path)
    export_dir = output_dir / "tokenizer"
    chunking = dict(cfg.get("tokenizer") or {})
    module.export_tokenizer(
        export_dir,
        chunk_frames=int(chunking.get("chunk_frames", 512)),
        context_frames=int(chunking.get("context_frames", 16)),
    )
    return export_dir
