"""Audio tokenizer encode speed (``python -m umt.bench audio-tokenizer``).

Throughput in audio seconds per wall second for the paper's DAC (44.1 kHz, 4 codebooks, random
weights) on CPU or a CUDA GPU (``--device auto|cpu|cuda``), next to a peer: the reference
implementation from a local descript-audio-codec checkout (``--reference-dir``, same weights loaded
through its module names) if given, else this project's whole-file encoding next to its chunked
encoding.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

from umt.bench.image_tokenizer import device_label, resolve_device, synchronize
from umt.models.dac import DAC, DACConfig
from umt.tokenizers.audio import encode_chunked


def _best_time(function, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)  # GPU kernels run asynchronously: wait for them before reading the clock
        best = min(best, time.perf_counter() - start)
    return best


def _reference_model(reference_dir: Path, config: DACConfig) -> torch.nn.Module:
    """The reference ``DAC`` built from a checkout, with stand-ins for audiotools if it is absent
    (only its model modules are imported, not ``dac/__init__``)."""
    sys.path.insert(0, str(reference_dir))
    try:
        import audiotools  # noqa: F401
    except ImportError:
        stub = types.ModuleType("audiotools")
        stub.AudioSignal = object
        stub.STFTParams = object
        stub.ml = types.SimpleNamespace(BaseModel=torch.nn.Module)
        sys.modules["audiotools"] = stub
        sys.modules["audiotools.ml"] = stub.ml  # type: ignore[assignment]
    package = types.ModuleType("dac")
    package.__path__ = [str(reference_dir / "dac")]
    sys.modules.setdefault("dac", package)
    from dac.model.dac import DAC as ReferenceDAC

    values = config.to_dict()
    values.pop("quantizer_dropout")
    return ReferenceDAC(**values).eval()


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench audio-tokenizer")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length to encode")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test config instead of the paper's")
    parser.add_argument("--reference-dir", type=Path, help="local descript-audio-codec checkout")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = DACConfig.tiny() if args.tiny else DACConfig()
    torch.manual_seed(0)
    model = DAC(config).eval().to(device)
    audio = (torch.randn(1, 1, int(args.seconds * config.sample_rate)) * 0.3).to(device)
    ours_codes = model.encode(audio)  # warm-up, and the codes to compare against

    if args.reference_dir is not None:
        reference = _reference_model(args.reference_dir, config)
        reference.load_state_dict(model.state_dict(), strict=True)
        reference.to(device)

        @torch.no_grad()
        def peer_encode() -> torch.Tensor:
            return reference.encode(reference.preprocess(audio, config.sample_rate))[1]

        peer_name = "reference DAC (whole file)"
        note = f"identical codes: {torch.equal(peer_encode(), ours_codes)}"
    else:

        def peer_encode() -> torch.Tensor:
            return encode_chunked(model, audio)

        peer_name = "umt DAC chunked (512+2x16 frames)"
        note = f"chunked == whole-file codes: {torch.equal(peer_encode(), ours_codes)}"

    # Alternate the two so that load from other processes hits both alike; keep the best of each.
    ours = peer = float("inf")
    for _ in range(args.repeats):
        ours = min(ours, _best_time(lambda: model.encode(audio), 1, device))
        peer = min(peer, _best_time(peer_encode, 1, device))

    size = "tiny" if args.tiny else "paper (44.1 kHz, 4 x 1024, encoder_dim 64)"
    print(f"audio-tokenizer encode, {size}, {args.seconds:g} s of audio, on {device_label(device)}")
    print(f"  {'umt DAC (whole file)':36s} {args.seconds / ours:8.2f} audio s / wall s  ({ours:.3f} s)")
    print(f"  {peer_name:36s} {args.seconds / peer:8.2f} audio s / wall s  ({peer:.3f} s)")
    print(f"  ratio umt / peer: {peer / ours:.2f}x   ({note})")
