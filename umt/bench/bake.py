"""Baking throughput (files/s): Lightning's predict path against a plain in-process loop.

    python -m umt.bench bake [--files N] [--size HxW] [--variants V] [--workers W] [--accelerator A]

Bakes N generated PNG images with a stand-in image tokenizer (PNG decode, V shift variants, a
small strided conv net as the "encoder", argmax codes), so the figures measure baking's own
machinery, not a particular model. Rows, each with the peer and the ratio:

* ``lightning, 0 workers``: ``Trainer.predict`` on one device, files read in the main process;
* ``lightning, W workers``: the same with W DataLoader workers reading files;

the peer is :func:`umt.data.bake.bake_files` (a plain loop, no Lightning, no workers). A rerun on
the finished folder (``rerun, nothing to do``) shows the cost of planning alone.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from umt.data.bake import bake_files
from umt.training.bake import bake_with_lightning
from umt.vocab import default_vocabulary


class ConvStandInTokenizer(torch.nn.Module):
    """A stand-in image tokenizer: ``[1, H, W]`` -> rows ``[H/16 * W/16, 4]`` from a strided conv."""

    modality = "image"

    def __init__(self, num_variants: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 4, stride=4), torch.nn.GELU(), torch.nn.Conv2d(32, 4 * 64, 4, stride=4)
        )
        self.num_variants = num_variants

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"bench-conv-stand-in").hexdigest()[:16]

    def load(self, path: str | Path) -> torch.Tensor:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        return torch.from_numpy(pixels / 127.5 - 1.0)[None]

    def variants(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            torch.roll(x, shifts=(shift // 4, shift % 4), dims=(-1, -2)) for shift in range(self.num_variants)
        ]

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor, vocab) -> np.ndarray:
        weight = next(self.parameters())
        features = self.encoder(x[None].to(weight.device, weight.dtype))  # [1, 4 * 64, H/16, W/16]
        codes = features.reshape(4, 64, -1).argmax(dim=1).T  # [H/16 * W/16, 4], values < 64
        return vocab.codes_to_ids("image", codes.cpu().numpy())


def _make_images(folder: Path, count: int, height: int, width: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for index in range(count):
        path = folder / f"img{index:05d}.png"
        Image.fromarray(rng.integers(0, 256, size=(height, width), dtype=np.uint8), mode="L").save(path)
        lines.append(path.name)
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench bake", description=__doc__)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--size", default="128x1024", help="image height x width in pixels")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))

    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    vocab = default_vocabulary()
    with tempfile.TemporaryDirectory(prefix="umt-bench-bake-") as tmp:
        root = Path(tmp)
        manifest = _make_images(root / "data", args.files, height, width)
        tokenizer = ConvStandInTokenizer(args.variants)

        def timed(out: str, function) -> float:
            start = time.perf_counter()
            summary = function(root / out)
            seconds = time.perf_counter() - start
            assert not summary.failures and summary.items_written in (0, args.files * args.variants)
            return seconds

        plain = timed("plain", lambda out: bake_files(manifest, out, tokenizer, vocab, progress=False))
        rows = []
        for workers in (0, args.workers):
            seconds = timed(
                f"lightning{workers}",
                lambda out, w=workers: bake_with_lightning(
                    manifest, out, tokenizer, vocab, accelerator=args.accelerator, devices=1,
                    num_workers=w, progress=False,
                ),
            )  # fmt: skip
            rows.append((f"lightning, {workers} workers", seconds))
        rerun = timed("plain", lambda out: bake_files(manifest, out, tokenizer, vocab, progress=False))

    print(
        f"bake: {args.files} images {height}x{width}, {args.variants} variants each, "
        f"stand-in conv tokenizer, {args.accelerator}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'':<26} {'files/s':>10} {'peer files/s':>13}  {'ratio':>7}  peer")
    for name, seconds in rows:
        ours, peer = args.files / seconds, args.files / plain
        print(f"{name:<26} {ours:>10.1f} {peer:>13.1f}  {ours / peer:>6.2f}x  plain loop (bake_files)")
    name = "rerun, nothing to do"
    print(f"{name:<26} {rerun:>9.3f}s {plain:>12.3f}s  {plain / rerun:>6.1f}x  first plain run")
