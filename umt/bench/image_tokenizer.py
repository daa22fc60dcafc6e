"""Image-tokenizer encode throughput (images/s) on CPU or a CUDA GPU, side by side with a peer.

Peer: the reference implementation (kakaobrain/rq-vae-transformer) when ``--reference-dir`` points
at a local checkout (its ``rqvae/models/rqvae`` modules are imported from there, same weights);
otherwise a naive loop that encodes one image at a time, against our batched path.

    python -m umt.bench image-tokenizer [--height 128] [--width 1024] [--batch 8] [--tiny]
                                        [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from pathlib import Path

import torch

from umt.models.rqvae import RQVAE, RQVAEConfig, tiny_rqvae_config


def resolve_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """``--device`` (``auto``: CUDA when available, else CPU) as a torch device; a usage error
    when CUDA is asked for and absent."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """What the figures were measured on, e.g. ``CPU, 8 threads`` or ``CUDA (NVIDIA H200)``."""
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return f"CPU, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(fn, images: torch.Tensor, repeats: int) -> float:
    fn(images[:1])  # warm-up (and, on a GPU, kernel selection)
    synchronize(images.device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(images)
    synchronize(images.device)
    return repeats * images.shape[0] / (time.perf_counter() - start)


def _reference_model(reference_dir: Path, config: RQVAEConfig, state_dict: dict) -> torch.nn.Module:
    # Import only the model modules: the reference's package __init__ files pull in the whole
    # training stack (and fail on Python 3.11), so register empty parent packages instead.
    models_dir = Path(reference_dir) / "rqvae" / "models"
    if not (models_dir / "rqvae" / "rqvae.py").is_file():
        raise SystemExit(
            f"{reference_dir}: not a kakaobrain/rq-vae-transformer checkout (no rqvae/models/rqvae)"
        )
    for name, path in (("_umt_rqref", models_dir), ("_umt_rqref.rqvae", models_dir / "rqvae")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules.setdefault(name, package)
    module = importlib.import_module("_umt_rqref.rqvae.rqvae")
    ddconfig = dict(
        double_z=False, z_channels=config.z_channels, resolution=config.resolution,
        in_channels=config.in_channels, out_ch=config.out_channels, ch=config.ch,
        ch_mult=list(config.ch_mult), num_res_blocks=config.num_res_blocks,
        attn_resolutions=list(config.attn_resolutions), dropout=config.dropout,
    )  # fmt: skip
    latent = [1, 1, config.embed_dim]
    model = module.RQVAE(
        embed_dim=config.embed_dim, n_embed=config.n_embed, decay=config.decay, loss_type=config.loss_type,
        latent_loss_weight=config.latent_loss_weight, bottleneck_type="rq", ddconfig=ddconfig,
        latent_shape=latent, code_shape=[1, 1, config.num_codebooks], shared_codebook=config.shared_codebook,
        restart_unused_codes=config.restart_unused_codes,
    )  # fmt: skip
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench image-tokenizer")
    parser.add_argument("--height", type=int, default=128, help="system height in px (<= 416)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="tiny config instead of the paper's sizes")
    parser.add_argument("--reference-dir", type=Path, default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = tiny_rqvae_config() if args.tiny else RQVAEConfig()
    model = RQVAE(config).eval()
    images = torch.rand(args.batch, 1, args.height, args.width) * 2 - 1
    model.to(device)
    images = images.to(device)

    def ours(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.get_codes(x)

    if args.reference_dir is not None:
        # load_state_dict copies across devices; then the reference runs where ours does.
        reference = _reference_model(args.reference_dir, config, model.state_dict()).to(device)
        peer_name = "reference (kakaobrain rqvae, batched)"

        def peer(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return reference.get_codes(x)

        codes_match = torch.equal(peer(images[:2]), ours(images[:2]))
    else:
        peer_name = "naive per-image loop (ours)"

        def peer(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([ours(x[i : i + 1]) for i in range(x.shape[0])])

        codes_match = torch.equal(peer(images[:2]), ours(images[:2]))
    ours_rate = _throughput(ours, images, args.repeats)
    peer_rate = _throughput(peer, images, args.repeats)
    size = "tiny" if args.tiny else "paper"
    print(
        f"image-tokenizer encode ({size} config, {args.height}x{args.width} px, batch {args.batch}, "
        f"on {device_label(device)})"
    )
    print(f"  {'umt (batched)':40s} {ours_rate:8.2f} images/s")
    print(f"  {peer_name:40s} {peer_rate:8.2f} images/s")
    print(f"  ratio umt / peer: {ours_rate / peer_rate:.2f}x   identical codes: {codes_match}")
