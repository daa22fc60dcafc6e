"""MusicScore's text-to-score-image task in UMT: the text modality, classifier-free guidance,
condition dropout, and the whole path on the built-in corpus (its metadata prompts come from
music21): corpus -> bake text and image -> a few CPU training steps -> export -> ``umt translate
--task t2i "a prompt" --guidance 4`` -> a PNG."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from tests import _inference_fixtures as fx
from umt.cli import main
from umt.modalities import PAPER_MODALITIES
from umt.vocab import VocabConfig, Vocabulary

MODALITIES = (*PAPER_MODALITIES, "text")


def test_text_is_bytes_appended_after_the_paper_s_blocks():
    paper = Vocabulary(VocabConfig())
    vocab = Vocabulary(VocabConfig(modalities=MODALITIES))
    assert list(vocab.ranges.items())[: len(paper.ranges)] == list(paper.ranges.items())
    assert vocab.sos("text") == paper.size and vocab["text/byte"].size == 256
    rows = vocab.text_rows("key is A♭ major")
    assert rows.shape == (len("key is A♭ major".encode()), vocab.num_codebooks)
    assert vocab.rows_text(rows) == "key is A♭ major"


def test_guidance_1_is_plain_generation_and_guided_logits_follow_the_formula():
    from umt.models.translator import Translator, TranslatorConfig, guided_logits

    torch.manual_seed(0)
    vocab = Vocabulary(replace(fx.tiny_vocab().config, modalities=MODALITIES))
    model = Translator(TranslatorConfig.tiny(), vocab).eval()
    rows = torch.from_numpy(vocab.text_rows("a music score, key is C major"))
    src = torch.cat([torch.from_numpy(vocab.special_row(vocab.sos("text")))[None], rows,
                     torch.from_numpy(vocab.special_row(vocab.eos("text")))[None]])[None]  # fmt: skip
    mask = torch.ones(src.shape[:2], dtype=torch.bool)
    empty = src[:, [0, -1]]
    modalities = (torch.tensor([vocab.modality_index("text")]), torch.tensor([vocab.modality_index("image")]))
    plain = model.generate(src, mask, *modalities, max_len=12, temperature=0)
    same = model.generate(src, mask, *modalities, max_len=12, temperature=0, guidance_scale=1.0,
                          unconditional=(empty, torch.ones(1, 2, dtype=torch.bool)))  # fmt: skip
    assert torch.equal(plain, same)
    # guided by itself (the prompt as its own "unconditional" source): u + s (c - u) = c
    itself = model.generate(src, mask, *modalities, max_len=12, temperature=0, guidance_scale=4.0,
                            unconditional=(src, mask))  # fmt: skip
    assert torch.equal(plain, itself)
    # a random model's prompt barely moves its logits; a large scale makes that difference decide
    guided = model.generate(src, mask, *modalities, max_len=12, temperature=0, guidance_scale=200.0,
                            unconditional=(empty, torch.ones(1, 2, dtype=torch.bool)))  # fmt: skip
    assert guided.shape[0] == 1 and not torch.equal(guided, plain)  # the empty prompt pushes away
    c, u = torch.tensor([[1.0, float("-inf"), 3.0]]), torch.tensor([[0.0, float("-inf"), 1.0]])
    assert torch.equal(guided_logits(c, u, 2.0), torch.tensor([[2.0, float("-inf"), 5.0]]))


def test_condition_dropout_empties_text_sources_deterministically():
    from types import SimpleNamespace

    from umt.data.pipeline import MixtureStream

    class Data:
        def get(self, item, choice):
            return np.full((5, 4), 3, np.int64), np.full((2, 4), 9, np.int64)

    spec = SimpleNamespace(source="text", target="image", task="t2i")
    sampler = SimpleNamespace(seed=3, streams=[spec], mixture=SimpleNamespace(tasks=["t2i"]))
    vocab = Vocabulary(replace(fx.tiny_vocab().config, modalities=MODALITIES))
    stream = MixtureStream(sampler, [Data()], vocab, condition_dropout=0.5)
    example = SimpleNamespace(stream=0, item=0, target_choice=0)

    def emptied(batch_index: int) -> list[bool]:
        batch = stream.load([example] * 32, batch_index)
        return (batch["src_mask"].sum(dim=1) == 2).tolist()  # SOS and EOS only

    first = emptied(7)
    assert first == emptied(7) and 8 <= sum(first) <= 24  # the same draws again; about half
    assert first != emptied(8)


def test_t2i_trains_on_the_built_in_corpus_and_writes_a_png_from_a_prompt(tmp_path, capsys):
    pytest.importorskip("verovio")
    from umt.training.config import compose
    from umt.training.train import train

    corpus = tmp_path / "corpus"
    assert main(["corpus", "build", "--out", str(corpus), "--sources", "bach", "--max-pieces", "2",
                 "--procedural", "2", "--excerpts-per-piece", "2", "--no-audio", "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    records = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    prompts = {(corpus / r["text"]).read_text().strip() for r in records}
    assert (
        "a music score, composer is Johann Sebastian Bach, instrumentation is soprano, alto, tenor, bass"
        in {p.split(", key is")[0] for p in prompts}
    )
    tokenizers = fx.make_tokenizer_dirs(tmp_path / "tokenizers")
    vocab = {**fx.TINY_VOCAB, "modalities": list(MODALITIES)}
    vocab_file = tmp_path / "vocab.yaml"
    vocab_file.write_text(yaml.safe_dump(vocab))
    images = tmp_path / "images.jsonl"
    images.write_text(
        "".join(json.dumps({"key": r["key"], "path": str(corpus / r["png"])}) + "\n" for r in records)
    )
    shards = tmp_path / "shards" / "music21"
    assert main(["bake", "text", "--manifest", str(corpus / "manifest.jsonl"), "--vocab", str(vocab_file),
                 "--out", str(shards / "text"), "--no-progress"]) == 0  # fmt: skip
    assert main(["bake", "image", "--manifest", str(images), "--tokenizer", str(tokenizers["image"]),
                 "--vocab", str(vocab_file), "--variants", "1", "--out", str(shards / "image"),
                 "--no-progress", "--num-workers", "0"]) == 0  # fmt: skip
    overrides = [
        "experiment=tiny", f"data.root={shards.parent}", f"run_dir={tmp_path / 'run'}",
        "trainer.max_steps=60", "optim.lr=3e-3", "logger.kind=none", "data.condition_dropout=0.3",
        "mixture.name=t2i_demo", "mixture.entries=[{task:t2i,datasets:[music21]}]",
        *(f"vocab.{k}={v}" for k, v in fx.TINY_VOCAB.items()), f"vocab.modalities=[{','.join(MODALITIES)}]",
    ]  # fmt: skip
    trainer = train(compose(overrides))
    assert trainer.global_step == 60
    model = tmp_path / "model"
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert (
        main(["export", str(checkpoint), "--out", str(model), "--tokenizer", str(tokenizers["image"])]) == 0
    )
    capsys.readouterr()
    out = tmp_path / "out"
    prompt = "a music score, instrumentation is violin, key is A major"
    argv = ["translate", "--checkpoint", str(model), "--task", "t2i", prompt, "-o", str(out),
            "--guidance", "4", "--temperature", "1", "--top-k", "8", "--max-len", "40", "-q"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    (png,) = out.glob("*.png")
    assert png.name == "a-music-score-instrumentation-is-violin-key-is-A-major.png"
    from PIL import Image

    image = np.asarray(Image.open(png))
    assert image.ndim == 2 and image.shape[0] > 0 and image.shape[1] > 0  # the codes decode to an image
