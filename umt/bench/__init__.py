"""Speed benchmarks (``python -m umt.bench NAME``): each prints figures side by side with a peer.

:data:`BENCHMARKS` maps a name to the modules it runs; each module has ``run(argv) -> None``.
"""

from __future__ import annotations

from pathlib import Path

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


def demo_folder(work: Path, preset: str) -> Path:
    """``work`` itself when it is a finished demo folder, else ``work/demo``, running ``umt demo
    --preset PRESET`` there first when it has no model yet (the benchmarks that need a trained
    model, its tokenizers and a corpus)."""
    demo = work if (work / "run" / "model").is_dir() else work / "demo"
    if not (demo / "run" / "model").is_dir():
        from umt.cli import main

        print(f"running the {preset} demo for a model and a corpus ...", flush=True)
        if main(["demo", "--preset", preset, "--out", str(demo), "--no-progress"]) != 0:
            raise SystemExit("the demo failed")
    return demo
