"""Training the score / non-score page classifier (:mod:`umt.musicscore.classifier`).

``DATA/score/*`` and ``DATA/non-score/*`` (``cover/`` is read as non-score too, as in MusicScore's
``cover-data``) are split per class into training and held-out pages by a seeded draw; the network
trains with AdamW and cross-entropy for a number of epochs, and the folder written at the end
records the held-out accuracy (``OUT/train.json``). After every epoch the run's state (weights,
optimizer, epoch, random generator) is written atomically to ``OUT/train-state.pt``, so a killed
run continues where it was when the same command is run again; the state is removed at the end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from umt.errors import UserError
from umt.modalities.image import page_files
from umt.musicscore.classifier import CLASSES, PageClassifier, PageClassifierConfig, page_tensor
from umt.training.epoch_state import STATE_FILE, resume_epoch_state, save_epoch_state
from umt.utils.io import atomic_write_text

FOLDERS = {
    "score": CLASSES.index("score"),
    "non-score": CLASSES.index("non-score"),
    "cover": CLASSES.index("non-score"),
}


@dataclass
class PageTrainOptions:
    data: str
    out: str
    image_size: int = 512
    widths: tuple[int, ...] = (64, 128, 256, 512)
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    held_out: float = 0.2
    """Fraction of each class's pages held out to measure accuracy."""
    seed: int = 0
    progress: bool = field(default=True, compare=False)


@dataclass
class PageTrainReport:
    train_pages: int
    held_out_pages: int
    held_out_accuracy: float
    epochs: int


def labelled_pages(data: Path) -> list[tuple[Path, int]]:
    """``(file, class)`` of every page image under ``DATA/score``, ``DATA/non-score`` (``cover``)."""
    pages = []
    for name, label in FOLDERS.items():
        folder = data / name
        if folder.is_dir():
            pages += [(p, label) for p in page_files(folder)]
    found = {label for _, label in pages}
    if found != set(range(len(CLASSES))):
        raise UserError("needs page images in both score/ and non-score/ (or cover/)", data)
    return pages


def _split(pages: list[tuple[Path, int]], held_out: float, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in range(len(CLASSES)):
        mine = [page for page in pages if page[1] == label]
        order = rng.permutation(len(mine))
        count = max(1, round(held_out * len(mine))) if len(mine) > 1 and held_out > 0 else 0
        test += [mine[i] for i in order[:count]]
        train += [mine[i] for i in order[count:]]
    return train, test


def _tensors(pages: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pages as ``uint8 [N, 1, S, S]`` (a quarter of float32's memory) and labels ``[N]``."""
    from umt.tokenizers.image import read_image

    images = [(page_tensor(read_image(path), size) * 255).round().to(torch.uint8) for path, _ in pages]
    return torch.stack(images), torch.tensor([label for _, label in pages])


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    model.eval()
    right = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].float() / 255.0)
        right += int((logits.argmax(dim=-1) == labels[start : start + batch_size]).sum())
    return right / max(1, len(images))


@torch.no_grad()
def recalibrate_batch_norm(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Set every batch norm's running statistics to those of the training pages (a pass in training
    mode with a cumulative average): after a few hundred steps the running averages still lag the
    weights, and the network in eval mode is then no better than chance."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for start in range(0, len(images), batch_size):
        if len(images[start : start + batch_size]) > 1:  # one page has no batch statistics
            model(images[start : start + batch_size].float() / 255.0)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def train_page_classifier(options: PageTrainOptions) -> PageTrainReport:
    """Train (or continue) a page classifier and write its folder to ``options.out``."""
    out = Path(options.out)
    if options.epochs < 1 or options.batch_size < 1 or not 0.0 <= options.held_out < 1.0:
        raise UserError("--epochs and --batch-size must be positive and --held-out in [0, 1)")
    train_pages, test_pages = _split(labelled_pages(Path(options.data)), options.held_out, options.seed)
    train_x, train_y = _tensors(train_pages, options.image_size)
    test_x, test_y = _tensors(test_pages, options.image_size)
    torch.manual_seed(options.seed)
    classifier = PageClassifier(PageClassifierConfig(options.image_size, tuple(options.widths)))
    model = classifier.model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
    )
    generator = torch.Generator().manual_seed(options.seed)
    settings = json.dumps(_settings(options), sort_keys=True)
    first_epoch = resume_epoch_state(out / STATE_FILE, settings, model, optimizer, generator, "--out")
    for epoch in tqdm(
        range(first_epoch, options.epochs), desc="classify-pages", disable=not options.progress
    ):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), options.batch_size):
            batch = order[start : start + options.batch_size]
            if len(batch) < 2:  # batch norm needs two pages
                continue
            loss = torch.nn.functional.cross_entropy(model(train_x[batch].float() / 255.0), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        save_epoch_state(out / STATE_FILE, settings, model, optimizer, generator, epoch + 1)
    recalibrate_batch_norm(model, train_x, options.batch_size)
    report = PageTrainReport(
        len(train_x), len(test_x), accuracy(model, test_x, test_y, options.batch_size), options.epochs
    )
    classifier.save_pretrained(out)
    atomic_write_text(out / "train.json", json.dumps(asdict(report), indent=2) + "\n")
    (out / STATE_FILE).unlink(missing_ok=True)
    model.eval()
    return report


def _settings(options: PageTrainOptions) -> dict:
    return {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k != "progress"
    }
