"""Two-process DDP training on CPU (gloo): parameters unused by a batch, per-rank data resume.

The script below runs in two processes (Lightning's ``ddp`` launcher starts rank 1 by running it
again); each rank writes what it saw to ``result-rank<N>.json``. Three fits with the tiny config:
six steps straight; four steps of the same run (stopped); the rest of it resumed from
``last.ckpt``. The tiny mixture's batches never hold an image target (OMR is image -> LMX) and
from step 2 may hold no image at all, so DDP sees parameters without a gradient in every step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests._subprocess import checkout_env
from tests._training_fixtures import PHASES_SCRIPT, make_shards, tiny_vocab

REPO = Path(__file__).resolve().parents[1]


def test_two_process_ddp_trains_and_each_rank_resumes_its_own_data_position(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", tiny_vocab())
    common = [
        "experiment=tiny",
        f"data.root={shards}",
        os.environ.get("UMT_TEST_STRATEGY", "trainer.strategy=ddp"),
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=6",
        "trainer.checkpoint_every_n_steps=2",
        "logger.kind=none",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    phases = [("straight", str(straight), None), ("first", str(resumed), 4), ("resume", str(resumed), None)]
    script = tmp_path / "train_ddp.py"
    script.write_text(PHASES_SCRIPT.format(repo=str(REPO), phases=phases, common=common))
    env = checkout_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"ddp training took {time.monotonic() - start:.1f} s")
    ranks = [json.loads((tmp_path / f"result-rank{r}.json").read_text()) for r in (0, 1)]

    checkpoint = torch.load(
        resumed / "checkpoints" / "step-00000004.ckpt", map_location="cpu", weights_only=True
    )
    saved = checkpoint["TranslationDataModule"]["samplers"]
    assert [(s["rank"], s["world_size"], s["batch_index"]) for s in saved] == [(0, 2, 4), (1, 2, 4)]
    assert saved[0]["cursors"] != saved[1]["cursors"] or saved[0]["rng"] != saved[1]["rng"]
    assert len(checkpoint["umt_rng"]["torch"]) == 2
    for rank, results in enumerate(ranks):
        assert results["straight"]["strategy"] == "DDPStrategy"
        assert results["straight"]["rank"] == rank
        assert results["first"]["global_step"] == 4
        # Each rank restored its own sampler (not rank 0's) and ran on to the end.
        assert results["resume"]["restored"] == saved[rank], rank
        assert results["resume"]["global_step"] == 6
        assert results["resume"]["final"]["batch_index"] == 6
        assert results["resume"]["final"] == results["straight"]["final"], rank

    # The resumed run ends exactly where the uninterrupted one did (per-rank RNG and data states).
    a = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["TranslationDataModule"] == b["TranslationDataModule"]


def test_ddp_strategies_look_for_unused_parameters() -> None:
    from umt.training.config import compose, validate
    from umt.training.train import build

    def strategy(name: str, devices: int):
        overrides = ["experiment=tiny", "data.root=unused", "logger.kind=none"]
        cfg = validate(compose([*overrides, f"trainer.strategy={name}", f"trainer.devices={devices}"]))
        return build(cfg)[0].strategy

    for name in ("ddp", "auto", "ddp_spawn"):  # "auto" on two devices is DDP too
        chosen = strategy(name, 2)
        assert type(chosen).__name__ == "DDPStrategy", name
        assert chosen._ddp_kwargs.get("find_unused_parameters") is True, name
    assert type(strategy("auto", 1)).__name__ == "SingleDeviceStrategy"
