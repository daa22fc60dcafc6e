"""``train(cfg)``: one training run from a composed config (``train.py`` / ``umt train``).

Checkpoints go to ``{run_dir}/checkpoints`` (every ``trainer.checkpoint_every_n_steps`` steps and
``last.ckpt``), written atomically by :class:`AtomicCheckpointIO`. With ``resume: auto`` a rerun
of the same command continues from ``last.ckpt``: same weights, optimizer, scheduler, curriculum
step and data position; under DDP every rank's data position and RNG state are in the
checkpoint. DDP strategies look for parameters a batch leaves unused (:func:`resolve_strategy`).

``data.tokenizers`` (tokenizer folders by modality) sets the tokenizer fingerprints the shards must
carry and, with ``init_codebook_embeddings``, initialises the image/audio token embeddings from
their codebooks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from umt.errors import CheckpointError, UserError
from umt.models.translator import LOSS_AVERAGES
from umt.tasks import mixture_from_dict
from umt.tokenizers.folders import fit_problem, load_tokenizer
from umt.training.config import validate
from umt.training.data import TranslationDataModule
from umt.training.translation import TranslationModule, tokenizer_codebook_vectors
from umt.utils.io import atomic_write
from umt.vocab import vocabulary_from_dict

if TYPE_CHECKING:
    from umt.vocab import Vocabulary


def _atomic_checkpoint_io():
    class AtomicCheckpointIO(TorchCheckpointIO):
        """Local checkpoints go to a temporary file, are fsynced and renamed onto the target, so a
        crash while saving never leaves a truncated file where the last good one was."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            target = str(path)
            if "://" in target and not target.startswith("file://"):
                return super().save_checkpoint(checkpoint, path, storage_options)

            with atomic_write(target.removeprefix("file://"), "wb") as handle:
                torch.save(checkpoint, handle)
            return None

    return AtomicCheckpointIO()


def _logger(cfg: DictConfig, run_dir: Path):
    kind = cfg.logger.kind
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(str(run_dir), name="logs", version="")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(str(run_dir), name="tensorboard", version="")
    if kind == "wandb":
        if cfg.logger.offline:
            os.environ.setdefault("WANDB_MODE", "offline")
        from lightning.pytorch.loggers import WandbLogger  # imports wandb only now

        return WandbLogger(
            project=cfg.logger.project,
            name=cfg.logger.name or cfg.name,
            save_dir=str(run_dir),
            offline=cfg.logger.offline,
        )
    if kind in ("none", "null"):
        return False
    raise UserError(f"logger.kind must be csv, tensorboard, wandb or none, got {kind!r}")


def resolve_resume(cfg: DictConfig, checkpoint_dir: Path) -> str | None:
    if cfg.resume in (None, "", "none"):
        return None
    if cfg.resume == "auto":
        last = checkpoint_dir / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(cfg.resume).exists():
        raise CheckpointError("no such checkpoint to resume from", cfg.resume)
    return str(cfg.resume)


_DDP_STRATEGIES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def resolve_strategy(strategy: str) -> Any:
    """The Lightning strategy for a ``trainer.strategy`` name, set up for the Translator.

    * The plain DDP names get ``find_unused_parameters``: a mixture batch need not hold every
      modality, so some parameters get no gradient in a step (the image row/column position tables
      when no image is in the batch, a codebook-vector table when no code of its modality is), and
      which ones changes from step to step with the curriculum. DDP has to look for them each step;
      making them take part with a zero contribution instead would put a distribution concern into
      the model's forward pass.
    * ``fsdp`` shards every Transformer block (encoder, decoder, sub-decoder) as its own unit
      (the rest — embeddings, norms, head — in the root unit), keeps the original parameters
      (``use_orig_params``: per-parameter weight decay, and parameters without a gradient in a
      step are fine) and writes full, unsharded checkpoints, which resume, export and
      ``init_from`` read like any other.
      Lightning's FSDP runs on CUDA devices only.
    * Other names go to Lightning as they are.
    """
    if strategy in _DDP_STRATEGIES:
        return f"{strategy}_find_unused_parameters_true"
    if strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from umt.models.transformer import DecoderLayer, EncoderLayer

        return FSDPStrategy(
            auto_wrap_policy={EncoderLayer, DecoderLayer}, use_orig_params=True, state_dict_type="full"
        )
    return strategy


def _cuda_accelerator(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting trains on CUDA devices here."""
    if accelerator in ("cuda", "gpu"):
        return True
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _given(node: Any) -> dict[str, str]:
    """The modalities a ``NeuralModalityNode`` (or a plain mapping) sets, with their values."""
    values = OmegaConf.to_container(node) if OmegaConf.is_config(node) else dict(node or {})
    return {modality: value for modality, value in values.items() if value is not None}


def load_data_tokenizers(cfg: DictConfig, vocab: Vocabulary) -> dict[str, Any]:
    """The tokenizers of ``data.tokenizers`` by modality, checked against the vocabulary."""

    tokenizers = {}
    for modality, directory in _given(cfg.data.tokenizers).items():
        tokenizer = load_tokenizer(directory)
        if tokenizer.modality != modality:
            raise UserError(f"data.tokenizers.{modality} is an {tokenizer.modality} tokenizer", directory)
        problem = fit_problem(tokenizer, vocab)
        if problem is not None:
            raise UserError(problem, directory)
        tokenizers[modality] = tokenizer
    return tokenizers


def expected_tokenizer_hashes(cfg: DictConfig, tokenizers: dict[str, Any]) -> dict[str, str]:
    """``data.tokenizer_hashes`` plus the fingerprints of ``data.tokenizers`` (they must agree)."""
    hashes = _given(cfg.data.tokenizer_hashes)
    for modality, tokenizer in tokenizers.items():
        given = hashes.setdefault(modality, tokenizer.fingerprint)
        if given != tokenizer.fingerprint:
            raise UserError(
                f"data.tokenizer_hashes.{modality} is {given}, data.tokenizers.{modality} has "
                f"fingerprint {tokenizer.fingerprint}"
            )
    return hashes


def build(cfg: DictConfig, callbacks: list | None = None):
    """``(trainer, module, datamodule, ckpt_path)`` for a validated config."""

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    checkpoint_dir = Path(cfg.run_dir) / "checkpoints"
    mixture = mixture_from_dict(cfg.mixture.name, OmegaConf.to_container(cfg.mixture, resolve=True))
    vocab = vocabulary_from_dict(OmegaConf.to_container(cfg.vocab, resolve=True))
    tokenizers = load_data_tokenizers(cfg, vocab)
    module = build_module(cfg, mixture.tasks, tokenizers, vocab)
    data_config = OmegaConf.to_container(cfg.data, resolve=True)
    data_config["tokenizer_hashes"] = expected_tokenizer_hashes(cfg, tokenizers)
    datamodule = TranslationDataModule(
        data_config,
        mixture,
        vocab,
        seed=cfg.seed,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        model_limits=(int(cfg.model.max_source_len), int(cfg.model.max_target_len)),
    )
    trainer = build_trainer(cfg, checkpoint_dir, callbacks)
    return trainer, module, datamodule, resolve_resume(cfg, checkpoint_dir)


def build_module(cfg: DictConfig, tasks: list[str], tokenizers: dict, vocab):
    """The :class:`TranslationModule`: the model config (with the code widths of the data's
    tokenizers when their codebooks initialise the embeddings), then ``init_from``'s weights."""

    if cfg.optim.loss_average not in LOSS_AVERAGES:
        choices = " or ".join(LOSS_AVERAGES)
        raise UserError(f"optim.loss_average must be {choices}, got {cfg.optim.loss_average!r}")
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    if cfg.init_from and Path(cfg.init_from).is_dir():
        model_config = architecture_of(cfg.init_from, model_config)
    codebooks = {}
    if cfg.init_codebook_embeddings:
        codebooks = {m: tokenizer_codebook_vectors(t, vocab) for m, t in tokenizers.items()}
        for modality, vectors in codebooks.items():
            key, dim = f"{modality}_code_dim", int(vectors[0].shape[1])
            if model_config[key] not in (0, dim):
                raise UserError(
                    f"model.{key} is {model_config[key]}, the {modality} tokenizer's codes have {dim} dims"
                )
            model_config[key] = dim
    module = TranslationModule(
        model=model_config,
        vocab=OmegaConf.to_container(cfg.vocab, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        tasks=tasks,
        max_steps=cfg.trainer.max_steps,
        task_metrics_every_n_steps=cfg.trainer.task_metrics_every_n_steps,
        window_seconds=float(cfg.data.window_seconds),
    )
    module.init_codebook_embeddings(codebooks)
    if cfg.init_from:
        load_initial_weights(module, cfg.init_from)
    return module


def build_trainer(cfg: DictConfig, checkpoint_dir: Path, callbacks: list | None = None):
    """The Lightning trainer: checkpoints every ``checkpoint_every_n_steps`` (written atomically),
    the logger, and the strategy ("auto" resolved to a DDP launcher that works where it runs)."""

    checkpoint = ModelCheckpoint(
        dirpath=str(checkpoint_dir),
        filename="step-{step:08d}",
        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
        save_top_k=cfg.trainer.keep_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
    )
    t = cfg.trainer
    run_dir = checkpoint_dir.parent
    logger = _logger(cfg, run_dir)

    def make_trainer(strategy: str) -> pl.Trainer:
        return pl.Trainer(
            max_steps=t.max_steps,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=strategy,
            precision=t.precision,
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val,
            log_every_n_steps=t.log_every_n_steps,
            enable_progress_bar=t.enable_progress_bar,
            deterministic=t.deterministic,
            logger=logger,
            callbacks=[checkpoint, *(callbacks or [])],
            plugins=[_atomic_checkpoint_io()],
            default_root_dir=str(run_dir),
            # The stream splits data by rank itself; no sampler is to be injected.
            use_distributed_sampler=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            max_epochs=-1,
        )

    if t.strategy == "fsdp" and not _cuda_accelerator(t.accelerator):
        raise UserError(
            f"trainer.strategy=fsdp runs on CUDA devices only (trainer.accelerator={t.accelerator}"
            + ("" if t.accelerator != "auto" else ", and no CUDA device is visible")
            + "); use ddp on CPU"
        )
    trainer = make_trainer(resolve_strategy(t.strategy))
    if t.strategy == "auto":
        from lightning.pytorch.strategies import DDPStrategy

        if type(trainer.strategy) is DDPStrategy:  # "auto" chose DDP (several devices or nodes)
            forked = (
                trainer.strategy.launcher is not None and trainer.strategy.launcher.is_interactive_compatible
            )
            trainer = make_trainer(resolve_strategy("ddp_fork" if forked else "ddp"))
    return trainer


def architecture_of(folder: str, model_config: dict) -> dict:
    """The model config of the model folder training starts from (its architecture: an imported
    U-MusT model has options no experiment sets), with this run's dropouts."""
    from umt.pretrained import read_config

    trained = dict(read_config(folder)["model"])
    for key in ("dropout", "attention_dropout"):
        trained[key] = model_config.get(key, trained.get(key))
    return trained


def load_initial_weights(module, source: str) -> None:
    """Start from the weights of a .ckpt or an exported model folder (not its optimizer state)."""
    path = Path(source)
    if path.is_dir():
        from umt.pretrained import load_state_dict_checked

        state = load_state_dict_checked(path, module.vocab)
    else:
        import torch

        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError("no such checkpoint", path) from None
        state = {k.removeprefix("translator."): v for k, v in checkpoint["state_dict"].items()}
    missing, unexpected = module.translator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})", path
        )


def train(cfg: DictConfig, callbacks: list | None = None):
    """Validate ``cfg``, train, and return the Lightning trainer (for ``family: sheet_autoencoder``
    and ``family: sim``, the run's report: :func:`umt.training.autoencoder.train_autoencoder`,
    :func:`umt.training.sim.train_sim`)."""
    family = cfg.get("family", "translator")
    if family == "sheet_autoencoder":
        from umt.training.autoencoder import train_autoencoder

        return train_autoencoder(validate(cfg))
    if family == "sim":
        from umt.training.sim import train_sim

        return train_sim(validate(cfg))
    if family != "translator":
        raise UserError(f"family must be translator, sheet_autoencoder or sim, not {family!r}")

    cfg = validate(cfg)
    trainer, module, datamodule, ckpt_path = build(cfg, callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer
