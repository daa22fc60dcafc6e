"""Training on a CUDA device: FSDP, bf16 mixed precision, CUDA RNG state in checkpoints.

Skipped without CUDA (Lightning's FSDP runs on CUDA devices only). The script runs in a
subprocess so the process group FSDP sets up does not outlive the test. Three fits of the tiny
config on one GPU with ``trainer.strategy=fsdp``: four steps straight; two steps of the same run
(stopped); the rest resumed from ``last.ckpt``. With ``trainer.deterministic=true`` (torch's
deterministic kernels: no atomics in the embedding backward) the resumed run ends on exactly the
weights of the straight one, as it does on a CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._subprocess import checkout_env
from tests._training_fixtures import PHASES_SCRIPT, TINY_VOCAB, make_shards, tiny_vocab

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


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
        "trainer.deterministic=true",
        "logger.kind=none",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    phases = [("straight", str(straight), None), ("first", str(resumed), 2), ("resume", str(resumed), None)]
    script = tmp_path / "train_fsdp.py"
    script.write_text(PHASES_SCRIPT.format(repo=str(REPO), phases=phases, common=common))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "result-rank0.json").read_text())
    assert results["straight"]["strategy"] == "FSDPStrategy"
    assert [results[p]["global_step"] for p in ("straight", "first", "resume")] == [4, 2, 4]
    assert results["resume"]["final"] == results["straight"]["final"]  # same data position

    first = torch.load(resumed / "checkpoints" / "step-00000002.ckpt", map_location="cpu", weights_only=True)
    assert len(first["umt_rng"]["cuda"]) == 1  # one state per rank
    assert first["optimizer_states"][0]["param_groups"][0]["fused"] is True
    a = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key

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
