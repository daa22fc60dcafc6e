"""Training the score-image RQ-VAE with Lightning.

:class:`RQVAELightning` builds its :class:`~umt.models.rqvae.RQVAE` from the plain config it is
given (saved as hyperparameters, so a Lightning checkpoint rebuilds it); the loss is MSE
reconstruction + 0.25 x commitment, the codebooks follow EMAs with restarts of unused codes, and
the optimizer is Adam. :func:`train_rqvae` runs a whole training from a Hydra/OmegaConf config
(``conf/tokenizer/rqvae.yaml`` or ``rqvae_tiny.yaml``) and exports the tokenizer folder.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from umt.errors import UserError
from umt.models.rqvae import RQVAE, RQVAEConfig
from umt.tokenizers.image import ImagePreprocessConfig, ImageTokenizer, preprocess, read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_image_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files from a folder (recursive), a manifest (``.txt``, one path a line, relative to the
    manifest's folder) or an explicit list."""
    if isinstance(source, str | Path):
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            lines = [line.strip() for line in source.read_text().splitlines()]
            files = [(source.parent / line) for line in lines if line and not line.startswith("#")]
        else:
            raise UserError("no such folder or manifest", source)
    else:
        files = [Path(p) for p in source]
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found", str(source))
    return files


class ImageCropDataset(Dataset):
    """Random ``[1, crop_height, crop_width]`` crops of preprocessed system images.

    Each item picks an image (round robin) and a random window inside it; images smaller than the
    window are padded with white. Unreadable files raise :class:`InputError` naming the file.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        crop_height: int,
        crop_width: int,
        preprocess_config: ImagePreprocessConfig | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.crop_height, self.crop_width = int(crop_height), int(crop_width)
        self.preprocess_config = preprocess_config or ImagePreprocessConfig()
        stride = self.preprocess_config.downsampling
        if self.crop_height % stride or self.crop_width % stride:
            raise ValueError(f"crop size must be a multiple of {stride}")
        self.samples_per_epoch = samples_per_epoch or len(self.files)
        self.seed = seed
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.samples_per_epoch

    def image(self, index: int) -> torch.Tensor:
        """The preprocessed image ``[1, H, W]`` of file ``index``."""
        if index not in self._cache:
            from umt.tokenizers.image import measure_staff_height

            gray = read_image(self.files[index])
            staff = measure_staff_height(gray) if self.preprocess_config.measure_staff_height else None
            self._cache[index] = preprocess(gray, self.preprocess_config, staff)
        return self._cache[index]

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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = RQVAE(RQVAEConfig.from_dict(dict(model)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model(images)

    def _step(self, images: torch.Tensor, stage: str) -> torch.Tensor:
        reconstructions, commitment, _codes = self.model(images)
        losses = self.model.compute_loss(reconstructions, commitment, images)
        batch = images.shape[0]
        self.log(f"{stage}/loss", losses["loss"], prog_bar=True, batch_size=batch)
        self.log(f"{stage}/recon", losses["recon"], batch_size=batch)
        self.log(f"{stage}/commitment", losses["commitment"], batch_size=batch)
        if stage == "train":
            usage = self.model.quantizer.usage()
            for k, value in enumerate(usage.tolist()):
                self.log(f"train/codebook{k}_usage", value, batch_size=batch)
        return losses["loss"]

    def training_step(self, batch: torch.Tensor, batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: torch.Tensor, batch_index: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # codebooks follow EMAs
        return torch.optim.Adam(
            trainable,
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )


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
    ``crop_width``, ``batch_size``, ``samples_per_epoch``, ``num_workers``), ``optim`` (``lr``,
    ``betas``), ``trainer`` (keyword arguments of ``lightning.Trainer``), ``output_dir`` and
    optionally ``seed`` and ``resume`` (a Lightning checkpoint to continue from).
    """
    cfg = _plain(cfg)
    L.seed_everything(int(cfg.get("seed", 0)), workers=True)
    model_config = RQVAEConfig.from_dict(dict(cfg["model"]))
    preprocess_values = dict(cfg.get("preprocess") or {})
    preprocess_values.setdefault("downsampling", model_config.downsampling)
    preprocess_config = ImagePreprocessConfig.from_dict(preprocess_values)
    data = dict(cfg["data"])
    files = list_image_files(data["images"])
    dataset = ImageCropDataset(
        files,
        data.get("crop_height", 128),
        data.get("crop_width", 512),
        preprocess_config,
        samples_per_epoch=data.get("samples_per_epoch"),
        seed=int(cfg.get("seed", 0)),
    )
    for index in range(len(files)):  # fail early (InputError naming the file), not inside a worker
        dataset.image(index)
    loader = DataLoader(
        dataset,
        batch_size=int(data.get("batch_size", 8)),
        shuffle=True,
        num_workers=int(data.get("num_workers", 0)),
        drop_last=False,
    )
    optim = dict(cfg.get("optim") or {})
    module = RQVAELightning(
        model_config.to_dict(),
        lr=float(optim.get("lr", 4e-5)),
        betas=tuple(optim.get("betas", (0.5, 0.9))),
        weight_decay=float(optim.get("weight_decay", 0.0)),
    )
    output_dir = Path(cfg.get("output_dir", "outputs/rqvae"))
    trainer_kwargs = dict(cfg.get("trainer") or {})
    trainer_kwargs.setdefault("default_root_dir", str(output_dir))
    trainer = L.Trainer(**trainer_kwargs)
    trainer.fit(module, loader, ckpt_path=cfg.get("resume"))
    tokenizer = ImageTokenizer(module.model.cpu(), preprocess_config)
    export_dir = output_dir / "tokenizer"
    tokenizer.save_pretrained(export_dir)
    return module, export_dir
