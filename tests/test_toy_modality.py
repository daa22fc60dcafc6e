"""Adding a modality touches nothing outside its own files: a toy "text" modality, made here.

The spec (a word list, and how its files become units and units files), two tasks (text -> LMX and
LMX -> text) and a mixture are registered by this test alone. Then the usual path runs unchanged:
shards of the new modality, a few training steps (Hydra config + overrides), ``umt export``, and
``umt translate`` reading and writing files of the new modality. Its vocabulary block comes after
the paper's, so the paper's ids stay where they were.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._vocab import TINY_CONFIG
from umt.cli import main as umt_main
from umt.data.shards import ShardInfo, ShardWriter
from umt.modalities import PAPER_MODALITIES, WordListSpec, register_modality, unregister_modality
from umt.modalities.spec import ModalityFiles, Units
from umt.tasks import TASKS, Task
from umt.tokenizers.lmx import parse_lmx_text
from umt.utils.io import atomic_write_text
from umt.vocab import Vocabulary

WORDS = ("do", "re", "mi", "fa", "sol")
PITCHES = {"do": "C4", "re": "D4", "mi": "E4", "fa": "F4", "sol": "G4"}
MODALITIES = (*PAPER_MODALITIES, "solfege")


class SolfegeFiles(ModalityFiles):
    """Solfege syllables, a line of a ``.sol`` text file one unit."""

    def read_units(self, path: Path, pipeline: Any) -> Units:
        from umt.errors import InputError

        self.spec.check_suffix(path)
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            ids = [[pipeline.vocab.word_id(self.spec.name, word) for word in line] for line in lines]
        except ValueError as error:
            raise InputError(str(error), path) from None
        return Units([pipeline.vocab.single_stream_rows(line) for line in ids])

    def output_files(self, outputs: list[Any], pipeline: Any, source: Units, name: str) -> dict:
        vocab = pipeline.vocab
        block = vocab[f"{self.spec.name}/token"]
        lines = [
            " ".join(vocab.word(self.spec.name, int(i)) for i in rows[:, 0] if block.contains(int(i)))
            for rows in outputs
        ]
        return {".sol": lambda path: atomic_write_text(path, "\n".join(lines) + "\n")}


SOLFEGE = WordListSpec(
    name="solfege",
    description="solfege syllables (a test's toy modality)",
    tokenizer="tests.test_toy_modality:SolfegeFiles",  # rule-based: the word list is all it needs
    files=SolfegeFiles,
    suffixes=(".sol",),
    file_kind="a solfege text file",
    input_help="solfege text",
    output_help="solfege text (.sol)",
    tokens=WORDS,
)


@pytest.fixture
def solfege():
    register_modality(SOLFEGE)
    TASKS.add("s2l", Task("s2l", "solfege", "lmx", ("toy",), "solfege to LMX"))
    TASKS.add("l2s", Task("l2s", "lmx", "solfege", ("toy",), "LMX to solfege"))
    yield Vocabulary(replace(TINY_CONFIG, modalities=MODALITIES))
    TASKS.remove("s2l")
    TASKS.remove("l2s")
    unregister_modality("solfege")


def _toy_shards(root: Path, vocab: Vocabulary, items: int = 24) -> Path:
    """``root/toy/{solfege,lmx}``: syllable lines and their melodies (a measure of quarter notes)."""
    rng = np.random.default_rng(0)
    sources = ShardWriter(root / "toy" / "solfege", ShardInfo("solfege", vocab.layout_hash, ""))
    targets = ShardWriter(root / "toy" / "lmx", ShardInfo("lmx", vocab.layout_hash, ""))
    with sources, targets:
        for index in range(items):
            line = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(1, 5)))]
            lmx = ["measure", *(token for word in line for token in (PITCHES[word], "quarter"))]
            sources.add(f"item{index}", vocab.single_stream_rows([vocab.word_id("solfege", w) for w in line]))
            targets.add(f"item{index}", vocab.single_stream_rows([vocab.lmx_id(t) for t in lmx]))
    return root


def test_a_new_modality_trains_exports_and_translates_files(
    solfege: Vocabulary, tmp_path: Path, capsys
) -> None:
    from umt.training.config import compose
    from umt.training.train import train

    vocab = solfege
    # The paper's ids stay where they were; the new block is appended.
    paper = Vocabulary(TINY_CONFIG)
    assert list(vocab.ranges.items())[: len(paper.ranges)] == list(paper.ranges.items())
    assert vocab.sos("solfege") == paper.size

    shards = _toy_shards(tmp_path / "shards", vocab)
    run = tmp_path / "run"
    overrides = [
        "experiment=tiny", f"data.root={shards}", f"run_dir={run}", "trainer.max_steps=30",
        "trainer.checkpoint_every_n_steps=30", f"vocab.modalities=[{','.join(MODALITIES)}]",
        "mixture.name=solfege", "mixture.entries=[{task:s2l,datasets:[toy]},{task:l2s,datasets:[toy]}]",
        "optim.lr=3e-3",
    ]  # fmt: skip
    trainer = train(compose(overrides))
    assert trainer.global_step == 30
    with open(run / "logs" / "metrics.csv") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    # It learns: batches alternate between the tasks and their losses differ, so compare means.
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])

    model = tmp_path / "model"
    assert umt_main(["export", str(run / "checkpoints" / "last.ckpt"), "--out", str(model)]) == 0
    song = tmp_path / "song.sol"
    song.write_text("do mi sol\nre fa\n")
    (tmp_path / "bad.sol").write_text("do ti\n")
    out = tmp_path / "out"
    argv = ["translate", "--checkpoint", str(model), "--task", "s2l", str(song), str(tmp_path / "bad.sol"),
            "-o", str(out), "--max-len", "12", "-q"]  # fmt: skip
    assert umt_main(argv) == 1  # one bad input: reported, the other translated
    err = capsys.readouterr().err
    assert "bad.sol: 'ti' is not a solfege token" in err
    assert sorted(p.name for p in out.iterdir()) == ["song.lmx", "song.musicxml"]
    assert len(parse_lmx_text((out / "song.lmx").read_text())) == 2  # a system a unit

    back = ["translate", "--checkpoint", str(model), "--task", "l2s", str(out / "song.lmx"), "-o",
            str(tmp_path / "back"), "--max-len", "12", "-q"]  # fmt: skip
    assert umt_main(back) == 0
    lines = (tmp_path / "back" / "song.sol").read_text().splitlines()
    assert len(lines) == 2 and set(" ".join(lines).split()) <= set(WORDS)


def test_the_new_modalitys_tasks_leave_with_it(solfege: Vocabulary) -> None:
    from umt.cli.translate import task_help

    assert task_help()["s2l"] == "solfege text -> MusicXML (+ .lmx)"
    assert task_help()["l2s"] == "MusicXML/MXL/LMX -> solfege text (.sol)"


def test_paper_tasks_only_without_the_toy_modality() -> None:
    from umt.cli.translate import task_help

    assert "s2l" not in task_help() and "solfege" not in Vocabulary().modalities
