"""Speed benchmarks (``python -m umt.bench NAME``): each prints figures side by side with a peer.

:data:`BENCHMARKS` maps a name to the modules it runs; each module has ``run(argv) -> None``.
"""

from __future__ import annotations

BENCHMARKS: dict[str, tuple[str, ...]] = {
    # name: modules run in order
    "image-tokenizer": ("umt.bench.image_tokenizer",),
    "tokenizers": ("umt.bench.lmx", "umt.bench.midi"),
    "audio-tokenizer": ("umt.bench.audio_tokenizer",),
    "translator": ("umt.bench.translator",),
    "bake": ("umt.bench.bake",),
    "inference": ("umt.bench.inference",),
    "prepare": ("umt.bench.prepare",),
    "eval": ("umt.bench.evaluation",),
    "quantized": ("umt.bench.quantized",),
    "long-inputs": ("umt.bench.long_inputs",),
}
