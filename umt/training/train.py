"""``train(cfg)``: one training run from a composed config (``train.py`` / ``umt train``).

Checkpoints go to ``{run_dir}/checkpoints`` (every ``trainer.checkpoint_every_n_steps`` steps and
``last.ckpt``), written atomically by :class:`AtomicCheckpointIO`. With ``resume: auto`` a rerun
of the same command continues from ``last.ckpt``: same weights, optimizer, scheduler, curriculum
step and data position.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from umt.errors import CheckpointError, UserError


def _atomic_checkpoint_io():
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Local checkpoints go to a temporary file, are fsynced and renamed onto the target, so a
        crash while saving never leaves a truncated file where the last good one was."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            target = str(path)
            if "://" in target and not target.startswith("file://"):
                return super().save_checkpoint(checkpoint, path, storage_options)
            import torch

            from umt.utils.io import atomic_write

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


def build(cfg: DictConfig, callbacks: list | None = None):
    """``(trainer, module, datamodule, ckpt_path)`` for a validated config."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from umt.tasks import mixture_from_dict
    from umt.training.data import TranslationDataModule
    from umt.training.translation import TranslationModule
    from umt.vocab import vocabulary_from_dict

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    mixture = mixture_from_dict(cfg.mixture.name, OmegaConf.to_container(cfg.mixture, resolve=True))
    vocab = vocabulary_from_dict(OmegaConf.to_container(cfg.vocab, resolve=True))
    module = TranslationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=OmegaConf.to_container(cfg.vocab, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        tasks=mixture.tasks,
        max_steps=cfg.trainer.max_steps,
        task_metrics_every_n_steps=cfg.trainer.task_metrics_every_n_steps,
    )
    if cfg.init_from:
        load_initial_weights(module, cfg.init_from)
    datamodule = TranslationDataModule(
        OmegaConf.to_container(cfg.data, resolve=True),
        mixture,
        vocab,
        seed=cfg.seed,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
    )
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
    trainer = pl.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        logger=_logger(cfg, run_dir),
        callbacks=[checkpoint, *(callbacks or [])],
        plugins=[_atomic_checkpoint_io()],
        default_root_dir=str(run_dir),
        # The stream splits data by rank itself; no sampler is to be injected.
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        max_epochs=-1,
    )
    return trainer, module, datamodule, resolve_resume(cfg, checkpoint_dir)


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
    """Validate ``cfg``, train, and return the Lightning trainer."""
    from umt.training.config import validate

    cfg = validate(cfg)
    trainer, module, datamodule, ckpt_path = build(cfg, callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer
