"""Training on a CUDA device: FSDP, bf16 mixed precision, CUDA RNG state in checkpoints.

Skipped without CUDA (Lightning's FSDP runs on CUDA devices only). The script runs in a
subprocess so the process group FSDP sets up does not outlive the test. Three fits of the tiny
config on one GPU with ``trainer.strategy=fsdp``: four steps straight; two steps of the same run
(stopped); the rest resumed from ``last.ckpt``. GPU kernels (bf16 matmuls, atomics in embedding
backward) need not be bit-exact run to run, so the resumed weights are compared with a tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._training_fixtures import TINY_VOCAB, make_shards, tiny_vocab

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FSDP_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
import lightning.pytorch as pl
from umt.training.config import compose
from umt.training.train import train


class StopAt(pl.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


results = {{}}
for phase, run_dir, stop in {phases!r}:
    trainer = train(compose({common!r} + [f"run_dir={{run_dir}}"]), callbacks=[StopAt(stop)] if stop else [])
    results[phase] = {{
        "strategy": type(trainer.strategy).__name__,
        "global_step": trainer.global_step,
        "fused": bool(trainer.optimizers[0].defaults["fused"]),
    }}
with open("result.json", "w") as handle:
    json.dump(results, handle)
"""


def test_fsdp_bf16_training_resumes_and_exports(tmp_path: Path) -> None:
    from umt.pretrained import export_checkpoint, from_pretrained

    shards = make_shards(tmp_path / "shards", tiny_vocab())
    common = [
        "experiment=tiny",
        f"data.root={shards}",
        "trainer.strategy=fsdp",
        "trainer.accelerator=gpu",
        "trainer.devices=1",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=4",
        "trainer.checkpoint_every_n_steps=2",
        "logger.kind=none",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    phases = [("straight", str(straight), None), ("first", str(resumed), 2), ("resume", str(resumed), None)]
    script = tmp_path / "train_fsdp.py"
    script.write_text(FSDP_SCRIPT.format(repo=str(REPO), phases=phases, common=common))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "result.json").read_text())
    assert results["straight"]["strategy"] == "FSDPStrategy"
    assert results["straight"]["fused"] is True
    assert [results[p]["global_step"] for p in ("straight", "first", "resume")] == [4, 2, 4]

    first = torch.load(resumed / "checkpoints" / "step-00000002.ckpt", map_location="cpu", weights_only=True)
    assert len(first["umt_rng"]["cuda"]) == 1  # one state per rank
    a = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.allclose(a["state_dict"][key], b["state_dict"][key], atol=1e-3), key

    # A full (unsharded) checkpoint exports like any other.
    out = export_checkpoint(resumed / "checkpoints" / "last.ckpt", tmp_path / "export", {}, {})
    model = from_pretrained(out, vocab=tiny_vocab())
    for key, value in model.state_dict().items():
        assert torch.equal(value, b["state_dict"][f"translator.{key}"]), key


def test_cuda_rng_state_is_saved_and_restored(tmp_path: Path) -> None:
    """Dropout on the GPU draws from the CUDA generator: a resume must put it back."""
    from umt.models.translator import TranslatorConfig
    from umt.training.translation import TranslationModule

    module = TranslationModule(model=TranslatorConfig.tiny().to_dict(), vocab=dict(TINY_VOCAB)).cuda()
    torch.cuda.manual_seed(123)
    saved: dict = {}
    module.on_save_checkpoint(saved)
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed(999)
    module.on_load_checkpoint(saved)
    module.on_train_start()
    assert torch.equal(torch.rand(4, device="cuda"), expected)
