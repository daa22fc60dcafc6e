"""Training the score-image RQ-VAE with Lightning.

:class:`RQVAELightning` builds its :class:`~umt.models.rqvae.RQVAE` from the plain config it is
given (saved as hyperparameters, so a Lightning checkpoint rebuilds it); the loss is MSE
reconstruction (optionally weighting ink pixels: ``optim.ink_weight``) + 0.25 x commitment, the
codebooks follow EMAs with restarts of unused codes, and the optimizer is Adam (optionally with a
cosine decay of the learning rate: ``optim.lr_schedule``). :func:`train_rqvae` runs a whole
training from a Hydra/OmegaConf config (``conf/tokenizer/rqvae.yaml`` or ``rqvae_tiny.yaml``) and
exports the tokenizer folder; like
:func:`umt.training.dac.train_dac` it checkpoints atomically and, with ``resume: auto``, a rerun of
the same command continues from ``<output_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from umt.errors import CheckpointError, InputError, UserError
from umt.modalities.image import RASTER_SUFFIXES as IMAGE_SUFFIXES
from umt.models.rqvae import RQVAE, RQVAEConfig
from umt.tokenizers.image import (
    ImagePreprocessConfig,
    ImageTokenizer,
    image_errors,
    measure_staff_height,
    preprocess,
    read_image,
)
from umt.training.dac import _log_version, resume_checkpoint
from umt.training.train import _atomic_checkpoint_io
from umt.utils.io import read_path_list

LR_SCHEDULES = ("constant", "cosine")


def list_image_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files from a folder (recursive), a manifest (``.txt``, one path a line, relative to the
    manifest's folder) or an explicit list."""
    if isinstance(source, str | Path):
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            files = read_path_list(source)
        else:
            raise UserError("no such folder or manifest", source)
    else:
        files = [Path(p) for p in source]
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found", str(source))
    return files


def check_image_header(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from an image file's header, without decoding its pixels (cheap, so that
    every training file can be checked before training starts). :class:`InputError` naming the file
    when it is missing, not an image PIL can identify, or empty."""

    path = Path(path)
    with image_errors(path), Image.open(path) as image:
        width, height = image.size
    if width < 1 or height < 1:
        raise InputError("empty image", path)
    return width, height


class ImageCropDataset(Dataset):
    """Random ``[1, crop_height, crop_width]`` crops of preprocessed system images.

    Each item picks an image (round robin) and a random window inside it; images smaller than the
    window are padded with white. Images are read and preprocessed lazily; each process (each loader
    worker) keeps the ``cache_images`` most recently used ones, so memory does not grow with the
    dataset. Unreadable files raise :class:`InputError` naming the file.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        crop_height: int,
        crop_width: int,
        preprocess_config: ImagePreprocessConfig | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        cache_images: int = 16,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.crop_height, self.crop_width = int(crop_height), int(crop_width)
        self.preprocess_config = preprocess_config or ImagePreprocessConfig()
        stride = self.preprocess_config.downsampling
        if self.crop_height % stride or self.crop_width % stride:
            raise ValueError(f"crop size must be a multiple of {stride}")
        self.samples_per_epoch = samples_per_epoch or len(self.files)
        self.seed = seed
        self.cache_images = max(0, int(cache_images))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return self.samples_per_epoch

    def image(self, index: int) -> torch.Tensor:
        """The preprocessed image ``[1, H, W]`` of file ``index`` (from the LRU cache when there)."""
        image = self._cache.get(index)
        if image is not None:
            self._cache.move_to_end(index)
            return image

        gray = read_image(self.files[index])
        staff = measure_staff_height(gray) if self.preprocess_config.measure_staff_height else None
        image = preprocess(gray, self.preprocess_config, staff)
        if self.cache_images:
            self._cache[index] = image
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return image

    def __getitem__(self, item: int) -> torch.Tensor:
        image = self.image(item % len(self.files))
        rng = random.Random(hash((self.seed, item, torch.initial_seed())))
        _, height, width = image.shape
        top = rng.randint(0, max(0, height - self.crop_height))
        left = rng.randint(0, max(0, width - self.crop_width))
        crop = image[:, top : top + self.crop_height, left : left + self.crop_width]
        out = torch.ones(1, self.crop_height, self.crop_width)
        out[:, : crop.shape[1], : crop.shape[2]] = crop
        return out


class RQVAELightning(L.LightningModule):
    """Trains an :class:`RQVAE` built from ``model`` (a dict of :class:`RQVAEConfig` fields)."""

    def __init__(
        self,
        model: Mapping[str, Any],
        lr: float = 4e-5,
        betas: Sequence[float] = (0.5, 0.9),
        weight_decay: float = 0.0,
        ink_weight: float = 0.0,
        lr_schedule: str = "constant",
    ) -> None:
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            choices = ", ".join(LR_SCHEDULES)
            raise UserError(f"optim.lr_schedule must be one of {choices}, not {lr_schedule!r}")
        self.save_hyperparameters()
        self.model = RQVAE(RQVAEConfig.from_dict(dict(model)))
        self.ink_weight = float(ink_weight)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model(images)

    def _step(self, images: torch.Tensor, stage: str) -> torch.Tensor:
        reconstructions, commitment, _codes = self.model(images)
        losses = self.model.compute_loss(reconstructions, commitment, images, self._pixel_weights(images))
        batch = images.shape[0]
        self.log(f"{stage}/loss", losses["loss"], prog_bar=True, batch_size=batch)
        self.log(f"{stage}/recon", losses["recon"], batch_size=batch)
        self.log(f"{stage}/commitment", losses["commitment"], batch_size=batch)
        if stage == "train":
            usage = self.model.quantizer.usage()
            for k, value in enumerate(usage.tolist()):
                self.log(f"train/codebook{k}_usage", value, batch_size=batch)
        return losses["loss"]

    def _pixel_weights(self, images: torch.Tensor) -> torch.Tensor | None:
        """``1 + ink_weight`` on ink (pixels darker than mid-grey), 1 on paper; None when 0.

        Ink is a few percent of a score's pixels: unweighted, a short training learns white pages
        and grey smears first, and thin staff lines and stems come last (they are what a reader
        needs). Weighting ink makes missing it cost more than smearing it.
        """
        if not self.ink_weight:
            return None
        return 1.0 + self.ink_weight * (images < 0).to(images.dtype)

    def training_step(self, batch: torch.Tensor, batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: torch.Tensor, batch_index: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # codebooks follow EMAs
        optimizer = torch.optim.Adam(
            trainable,
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # cosine from lr to 0 over trainer.max_steps: a short run ends on a settled model
        total = max(1, int(self.trainer.max_steps))
        decay = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        pass
    return dict(cfg)


def train_rqvae(cfg: Any) -> Path:
    """Train an RQ-VAE as ``cfg`` says and export the tokenizer folder; returns its path.

    See :func:`fit_rqvae` for the keys of ``cfg``.
    """
    return fit_rqvae(cfg)[1]


def fit_rqvae(cfg: Any) -> tuple[RQVAELightning, Path]:
    """Train an RQ-VAE and export ``<output_dir>/tokenizer``; returns (the trained module, that folder).

    ``cfg`` (a Hydra node or a dict) holds ``model`` (RQVAEConfig fields), ``preprocess``
    (ImagePreprocessConfig fields), ``data`` (``images``: folder / manifest / list, ``crop_height``,
    ``crop_width``, ``batch_size``, ``samples_per_epoch``, ``num_workers``, ``cache_images``:
    preprocessed images kept per loader worker), ``optim`` (``lr``, ``betas``), ``trainer``
    (keyword arguments of ``lightning.Trainer``, plus ``checkpoint_every_n_steps`` and
    ``keep_checkpoints``), ``output_dir`` and optionally ``seed`` and ``resume`` (``auto``:
    continue from ``<output_dir>/checkpoints/last.ckpt`` when it exists; a path; or null).

    Checkpoints (``<output_dir>/checkpoints``, unless ``trainer.enable_checkpointing`` is false) are
    written atomically, and ``last.ckpt`` also when training ends, so a killed run rerun with the
    same command resumes, and a finished one rerun with a larger ``trainer.max_steps`` continues.
    Every image's header is checked before training starts; an image whose pixels turn out
    unreadable later stops training with an :class:`InputError` naming it.
    """

    cfg = _plain(cfg)
    seed = int(cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    model_config = RQVAEConfig.from_dict(dict(cfg["model"]))
    preprocess_values = dict(cfg.get("preprocess") or {})
    preprocess_values.setdefault("downsampling", model_config.downsampling)
    preprocess_config = ImagePreprocessConfig.from_dict(preprocess_values)
    data = dict(cfg["data"])
    files = list_image_files(data["images"])
    for path in files:  # fail early, in one line naming the file, without decoding every image
        check_image_header(path)
    dataset = ImageCropDataset(
        files,
        data.get("crop_height", 128),
        data.get("crop_width", 512),
        preprocess_config,
        samples_per_epoch=data.get("samples_per_epoch"),
        seed=seed,
        cache_images=int(data.get("cache_images", 16)),
    )
    num_workers = int(data.get("num_workers", 0))
    loader = DataLoader(
        dataset,
        batch_size=int(data.get("batch_size", 8)),
        shuffle=True,
        num_workers=num_workers,
        drop_last=False,
        persistent_workers=num_workers > 0,  # keeps each worker's image cache across epochs
    )
    optim = dict(cfg.get("optim") or {})
    module = RQVAELightning(
        model_config.to_dict(),
        lr=float(optim.get("lr", 4e-5)),
        betas=tuple(optim.get("betas", (0.5, 0.9))),
        weight_decay=float(optim.get("weight_decay", 0.0)),
        ink_weight=float(optim.get("ink_weight", 0.0)),
        lr_schedule=str(optim.get("lr_schedule", "constant")),
    )
    output_dir = Path(cfg.get("output_dir") or "outputs/rqvae")
    checkpoint_dir = output_dir / "checkpoints"
    trainer_kwargs = dict(cfg.get("trainer") or {})
    every_n_steps = int(trainer_kwargs.pop("checkpoint_every_n_steps", 5000))
    keep_checkpoints = int(trainer_kwargs.pop("keep_checkpoints", 1))
    ckpt_path = resume_checkpoint(cfg.get("resume", "auto"), checkpoint_dir)
    if ckpt_path is not None:
        _check_resumable(ckpt_path, module)
    callbacks = []
    if trainer_kwargs.get("enable_checkpointing", True):
        callbacks.append(
            ModelCheckpoint(
                dirpath=str(checkpoint_dir),
                filename="step-{step:08d}",
                every_n_train_steps=every_n_steps,
                save_top_k=keep_checkpoints,
                monitor="step",
                mode="max",
                save_last=True,
                auto_insert_metric_name=False,
            )
        )
    if trainer_kwargs.get("logger", True) is True:
        version = _log_version(output_dir / "logs", ckpt_path)
        trainer_kwargs["logger"] = CSVLogger(str(output_dir), name="logs", version=version)
    trainer_kwargs.setdefault("default_root_dir", str(output_dir))
    trainer = L.Trainer(**trainer_kwargs, callbacks=callbacks, plugins=[_atomic_checkpoint_io()])
    try:
        trainer.fit(module, loader, ckpt_path=ckpt_path)
    except InputError as error:
        raise _unwrap_worker_error(error) from None
    if callbacks:
        # ModelCheckpoint writes last.ckpt only every n steps: record the final step too.
        trainer.save_checkpoint(checkpoint_dir / "last.ckpt", weights_only=False)
    tokenizer = ImageTokenizer(module.model.cpu(), preprocess_config)
    export_dir = output_dir / "tokenizer"
    tokenizer.save_pretrained(export_dir)
    return module, export_dir


def _check_resumable(ckpt_path: str, module: RQVAELightning) -> None:
    """:class:`CheckpointError` (one line) when ``ckpt_path`` is unreadable or holds another model."""
    try:
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        saved_model = saved["hyper_parameters"]["model"]
    except Exception as error:
        raise CheckpointError(
            f"cannot resume from this checkpoint ({error.__class__.__name__}); delete it or set resume=null",
            ckpt_path,
        ) from None
    if saved_model != module.hparams.model:
        raise CheckpointError(
            "cannot resume: the checkpoint holds another model config; use another output_dir or "
            "set resume=null",
            ckpt_path,
        )


def _unwrap_worker_error(error: InputError) -> InputError:
    """A loader worker's :class:`InputError` comes back with the worker's traceback in its message;
    keep its last line (``umt.errors.InputError: <file>: <problem>``) without the class name."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return error
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return type(error)(last.removeprefix(prefix))
