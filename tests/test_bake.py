"""Baking manifests into token shards: equality with direct tokenizing, variants, resuming after a
kill, listed failures, refusal of a mismatched tokenizer, the CLI and Lightning's predict path.

The tokenizers here are small fakes defined in this file (deterministic codes from pixel / sample
means) that implement the tokenizer protocol; tests hand them to the code through the tokenizer
registry's API (a registry argument or a monkeypatched table), never through import side effects.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._subprocess import checkout_env
from umt.data.bake import (
    FAILURES_FILE,
    ManifestEntry,
    VariantChoice,
    bake_files,
    read_manifest,
)
from umt.data.shards import ShardSet, _read_header
from umt.errors import InputError, UserError
from umt.modalities.windows import has_time_axis, window_key
from umt.tokenizers import registry as tokenizer_registry
from umt.utils.registry import Registry
from umt.vocab import default_vocabulary

VOCAB = default_vocabulary()
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- fake tokenizers


class FakeImageTokenizer:
    """Image -> one row per 4-pixel column strip; codes from the strip mean. 4 shift variants.

    It does not say how many variants it makes (no ``num_variants``), so baking must find out.
    """

    modality = "image"

    def __init__(self, salt: str = "a") -> None:
        self.salt = salt

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> FakeImageTokenizer:
        config = json.loads((Path(directory) / "config.json").read_text())
        return cls(config["salt"])

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "config.json").write_text(json.dumps({"salt": self.salt}))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"fake-image-{self.salt}".encode()).hexdigest()[:16]

    def load(self, path: str | Path) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as image:  # PIL's own error for a corrupt file: baking must list it
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        return torch.from_numpy(pixels / 127.5 - 1.0)[None]

    def variants(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.roll(x, shifts=shift, dims=-1) for shift in range(4)]

    def tokenize(self, x: torch.Tensor, vocab) -> np.ndarray:
        strips = x[0].reshape(x.shape[1], -1, 4).mean(dim=(0, 2))  # [W / 4]
        base = ((strips + 1.0) * 400).round().long().numpy()
        offset = 1 if self.salt == "a" else 7
        codes = np.stack([(base + k * offset) % 1024 for k in range(4)], axis=-1)  # [T, 4]
        return vocab.codes_to_ids("image", codes)

    def detokenize(self, rows: np.ndarray, vocab) -> torch.Tensor:  # pragma: no cover - not used
        raise NotImplementedError


class FakeAudioTokenizer:
    """Mono WAV -> one row per 100 samples; 3 shift variants (announced by ``num_variants``)."""

    modality = "audio"
    num_variants = 3
    fingerprint = "fake-audio-1"

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> FakeAudioTokenizer:
        return cls()

    def load(self, path: str | Path) -> torch.Tensor:
        import soundfile

        try:
            samples, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as error:
            raise InputError(f"not a readable audio file ({type(error).__name__})", path) from None
        return torch.from_numpy(samples.mean(axis=1))[None]

    def variants(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x[:, shift * 10 :] for shift in range(3)]

    def tokenize(self, x: torch.Tensor, vocab) -> np.ndarray:
        frames = x[0, : x.shape[1] // 100 * 100].reshape(-1, 100)
        base = (frames.abs().mean(dim=1) * 1000).round().long().numpy()
        codes = np.stack([(base * (k + 1)) % 1024 for k in range(4)], axis=-1)
        return vocab.codes_to_ids("audio", codes)


def fake_registry() -> Registry:
    registry: Registry = Registry("tokenizer modality")
    registry.add("image", FakeImageTokenizer)
    registry.add("audio", FakeAudioTokenizer)
    return registry


# ----------------------------------------------------------------------------------------- helpers


def make_images(folder: Path, count: int, width: int = 32) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, size=(8, width), dtype=np.uint8)
        path = folder / f"img{index}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(path)
    return paths


def make_wavs(folder: Path, count: int) -> list[Path]:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        samples = np.random.default_rng(100 + index).uniform(-0.5, 0.5, size=1000 + 200 * index)
        path = folder / f"clip{index}.wav"
        soundfile.write(str(path), samples.astype(np.float32), 16000)
        paths.append(path)
    return paths


def write_manifest(path: Path, files: list[Path], split: str | None = None) -> Path:
    lines = []
    for file in files:
        record = {"key": file.stem, "path": os.path.relpath(file, path.parent)}
        if split:
            record["split"] = split
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def raw_items(out_dir: Path) -> list[tuple[str, int]]:
    """Every (key, variant) stored in the shards, duplicates included (ShardSet would hide them)."""
    items = []
    for shard in sorted(out_dir.glob("*.safetensors")):
        _, keys, variants = _read_header(shard)
        items += list(zip(keys, variants))
    return items


def expected_rows(tokenizer, path: Path, variant: int, vocab=VOCAB) -> np.ndarray:
    return tokenizer.tokenize(tokenizer.variants(tokenizer.load(path))[variant], vocab)


def assert_shards_match(
    out_dir: Path, tokenizer, files: dict[str, Path], variants: list[int], vocab=VOCAB
) -> None:
    shards = ShardSet(
        out_dir,
        modality=tokenizer.modality,
        vocab_hash=vocab.layout_hash,
        tokenizer_hash=tokenizer.fingerprint,
    )
    items = raw_items(out_dir)
    # Audio files shorter than a window are one window each, keyed KEY@0.
    files = {window_key(k, 0) if has_time_axis(tokenizer.modality) else k: p for k, p in files.items()}
    assert len(items) == len(set(items)), "duplicated items"
    assert set(items) == {(key, v) for key in files for v in variants}
    for key, path in files.items():
        for variant in variants:
            np.testing.assert_array_equal(
                shards.get(key, variant), expected_rows(tokenizer, path, variant, vocab)
            )


# ---------------------------------------------------------------------------------------- manifest


def test_manifest_json_lines_resolves_paths_and_reads_splits(tmp_path: Path) -> None:
    manifest = tmp_path / "lists" / "m.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(
        "# comment\n"
        '{"key": "a", "path": "../data/a.png", "split": "train"}\n'
        "\n"
        '{"path": "b.png", "split": "valid", "extra": 1}\n'
        f'{{"key": "c", "path": "{tmp_path / "abs.png"}"}}\n'
    )
    entries = read_manifest(manifest)
    assert entries == [
        ManifestEntry("a", manifest.parent / "../data/a.png", "train", 2),
        ManifestEntry("b.png", manifest.parent / "b.png", "valid", 4),
        ManifestEntry("c", tmp_path / "abs.png", None, 5),
    ]
    assert [e.key for e in read_manifest(manifest, split="valid")] == ["b.png"]
    with pytest.raises(UserError, match="no entries with split 'test'"):
        read_manifest(manifest, split="test")


def test_plain_list_manifest_keys_are_relative_paths(tmp_path: Path) -> None:
    manifest = tmp_path / "files.txt"
    manifest.write_text(f"sub/x.png\n\n{tmp_path / 'y.png'}\n/elsewhere/z.png\n")
    entries = read_manifest(manifest)
    assert [(e.key, e.path, e.line) for e in entries] == [
        ("sub/x.png", tmp_path / "sub/x.png", 1),
        ("y.png", tmp_path / "y.png", 3),
        ("/elsewhere/z.png", Path("/elsewhere/z.png"), 4),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"key": "a", "path": "a.png"}\n{"key": "b", "path": \n', r"m\.jsonl: line 2: not valid JSON"),
        ('{"key": "a"}\n', r'm\.jsonl: line 1: "path" must be a non-empty string'),
        ('{"key": 3, "path": "x"}\n', r'line 1: "key" must be a non-empty string'),
        ('["a.png"]\n', r"m\.jsonl: line 1: expected a JSON object"),
        (
            '{"key": "a", "path": "a.png"}\n\n{"key": "a", "path": "b.png"}\n',
            r"line 3: duplicate key 'a' \(first on line 1\)",
        ),
        ("\n# nothing\n", r"m\.jsonl: manifest lists no files"),
    ],
)
def test_malformed_manifest_names_the_manifest_and_line(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(text)
    with pytest.raises(UserError, match=message):
        read_manifest(manifest)


def test_variant_choice_parsing() -> None:
    assert VariantChoice.parse("all").numbers(32) == list(range(32))
    assert VariantChoice.parse("none").numbers(32) == [0]
    assert VariantChoice.parse("3").numbers(32) == [0, 1, 2]
    assert VariantChoice.parse("50").numbers(9) == list(range(9))
    for bad in ("0", "-1", "some"):
        with pytest.raises(UserError, match="--variants must be"):
            VariantChoice.parse(bad)


# ----------------------------------------------------------------------------------------- baking


def test_baked_shards_equal_direct_tokenize_for_every_variant(tmp_path: Path) -> None:
    images = make_images(tmp_path / "data", 3)
    manifest = write_manifest(tmp_path / "m.jsonl", images)
    tokenizer = FakeImageTokenizer()
    summary = bake_files(manifest, tmp_path / "out", tokenizer, VOCAB, progress=False)
    assert (summary.entries, summary.skipped, summary.items_written, summary.failures) == (3, 0, 12, [])
    assert_shards_match(tmp_path / "out", tokenizer, {p.stem: p for p in images}, [0, 1, 2, 3])
    assert [p.name for p in (tmp_path / "out").glob("*.safetensors")] == ["shard-rank0000-00000.safetensors"]
    report = json.loads((tmp_path / "out" / FAILURES_FILE).read_text())
    assert report["failed"] == 0 and report["failures"] == []


def test_variant_selection_and_widening_it_later(tmp_path: Path) -> None:
    images = make_images(tmp_path / "data", 2)
    manifest = write_manifest(tmp_path / "m.jsonl", images)
    tokenizer = FakeImageTokenizer()
    out = tmp_path / "out"
    bake_files(manifest, out, tokenizer, VOCAB, variants="none", progress=False)
    assert sorted(raw_items(out)) == [("img0", 0), ("img1", 0)]
    summary = bake_files(manifest, out, tokenizer, VOCAB, variants=2, progress=False)
    assert summary.items_written == 2
    assert sorted(raw_items(out)) == [("img0", 0), ("img0", 1), ("img1", 0), ("img1", 1)]
    # "all" on a tokenizer that does not announce its count: found by probing, only 2 and 3 added.
    summary = bake_files(manifest, out, tokenizer, VOCAB, variants="all", progress=False)
    assert summary.items_written == 4
    assert_shards_match(out, tokenizer, {p.stem: p for p in images}, [0, 1, 2, 3])
    summary = bake_files(manifest, out, tokenizer, VOCAB, progress=False)
    assert (summary.skipped, summary.items_written) == (2, 0)


class Killed(Exception):
    pass


def test_killed_run_is_finished_by_rerunning(tmp_path: Path) -> None:
    wavs = make_wavs(tmp_path / "data", 6)
    manifest = write_manifest(tmp_path / "m.jsonl", wavs)
    tokenizer = FakeAudioTokenizer()
    out = tmp_path / "out"
    finished = []

    def kill_after_four(tokenized) -> None:
        finished.append(tokenized.entry.key)
        if len(finished) == 4:
            raise Killed

    with pytest.raises(Killed):
        bake_files(
            manifest, out, tokenizer, VOCAB, items_per_shard=5, progress=False, on_entry_done=kill_after_four
        )
    first_run = raw_items(out)
    assert set(first_run) == {(f"clip{i}@0", v) for i in range(4) for v in range(3)}  # 12 items, whole
    first_files = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    # A hard kill during a write leaves a hidden temporary file: the rerun must clear it.
    (out / ".shard-rank0000-00009.x1y2.safetensors").write_bytes(b"partial")

    summary = bake_files(manifest, out, tokenizer, VOCAB, items_per_shard=5, progress=False)
    assert (summary.skipped, summary.items_written) == (4, 6)
    assert_shards_match(out, tokenizer, {p.stem: p for p in wavs}, [0, 1, 2])
    assert not list(out.glob(".*"))
    for name, data in first_files.items():  # earlier shards are kept as they were
        assert (out / name).read_bytes() == data


def test_unreadable_files_are_listed_and_the_others_baked(tmp_path: Path) -> None:
    images = make_images(tmp_path / "data", 2)
    (tmp_path / "data" / "empty.png").write_bytes(b"")
    (tmp_path / "data" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "data" / "folder.png").mkdir()
    names = ["img0.png", "empty.png", "missing.png", "corrupt.png", "folder.png", "img1.png"]
    manifest = write_manifest(tmp_path / "m.jsonl", [tmp_path / "data" / n for n in names])
    summary = bake_files(manifest, tmp_path / "out", FakeImageTokenizer(), VOCAB, progress=False)
    reasons = {f.key: f.reason for f in summary.failures}
    assert set(reasons) == {"empty", "missing", "corrupt", "folder"}
    assert reasons["empty"] == "empty file"
    assert reasons["missing"] == "no such file"
    assert reasons["folder"] == "is a directory, not a file"
    assert reasons["corrupt"] == "OSError: Truncated File Read"  # a library error, named by its type
    assert summary.failure_lines()[str(tmp_path / "data" / "empty.png")] == "empty file"
    assert_shards_match(tmp_path / "out", FakeImageTokenizer(), {p.stem: p for p in images}, [0, 1, 2, 3])
    report = json.loads((tmp_path / "out" / FAILURES_FILE).read_text())
    assert report["failed"] == 4
    assert {(f["key"], f["reason"]) for f in report["failures"]} == set(reasons.items())


def test_an_out_folder_baked_with_another_tokenizer_is_refused(tmp_path: Path) -> None:
    images = make_images(tmp_path / "data", 1)
    manifest = write_manifest(tmp_path / "m.jsonl", images)
    bake_files(manifest, tmp_path / "out", FakeImageTokenizer("a"), VOCAB, progress=False)
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    with pytest.raises(
        UserError, match=r"out: holds shards with tokenizer fingerprint '[0-9a-f]+' \(this run"
    ):
        bake_files(manifest, tmp_path / "out", FakeImageTokenizer("b"), VOCAB, progress=False)
    with pytest.raises(UserError, match=r"modality 'image' \(this run: 'audio'\)"):
        bake_files(manifest, tmp_path / "out", FakeAudioTokenizer(), VOCAB, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_real_tiny_tokenizers_bake_what_they_tokenize_and_skip_on_rerun(tmp_path: Path) -> None:
    """The tiny random RQ-VAE and DAC folders of the inference tests, opened as ``umt bake`` opens
    a ``--tokenizer`` folder, bake every shift variant of real files: rows as tokenizing directly."""
    import _inference_fixtures as fx
    from PIL import Image

    from umt.tokenizers.folders import load_tokenizer

    vocab = fx.tiny_vocab()
    folders = fx.make_tokenizer_dirs(tmp_path / "tokenizers")
    images = []
    for index, width in enumerate((70, 100)):  # staff-like systems: lines and a few note heads
        pixels = np.full((44, width), 250, np.uint8)
        for line in range(5):
            pixels[12 + 5 * line, 2:-2] = 20
        for x in np.random.default_rng(index).integers(4, width - 8, size=4):
            pixels[14:18, x : x + 5] = 10
        images.append(tmp_path / "data" / f"system{index}.png")
        images[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(images[-1])
    clips = [fx.save_wav(tmp_path / "data" / f"clip{i}.wav", 0.02 + 0.015 * i, seed=i) for i in range(2)]

    # 4 of the 32 image shifts (each a whole RQ-VAE pass, ~50 ms here) and all 9 audio shifts.
    for modality, files, variant_count in (("image", images, 4), ("audio", clips, 9)):
        tokenizer = load_tokenizer(folders[modality])
        assert type(tokenizer).__name__ == f"{modality.title()}Tokenizer"
        manifest = write_manifest(tmp_path / f"{modality}.jsonl", files)
        out = tmp_path / "out" / modality
        summary = bake_files(manifest, out, tokenizer, vocab, variants=variant_count, progress=False)
        assert (summary.entries, summary.failures) == (len(files), [])
        assert summary.items_written == len(files) * variant_count
        assert_shards_match(out, tokenizer, {p.stem: p for p in files}, list(range(variant_count)), vocab)
        fingerprint = json.loads((folders[modality] / "config.json").read_text())["fingerprint"]
        assert tokenizer.fingerprint == fingerprint
        shards = sorted(out.glob("*.safetensors"))
        assert shards and all(_read_header(shard)[0].tokenizer_hash == fingerprint for shard in shards)
        written = {shard.name: shard.read_bytes() for shard in shards}

        rerun = bake_files(manifest, out, tokenizer, vocab, variants=variant_count, progress=False)
        assert (rerun.skipped, rerun.items_written, rerun.failures) == (len(files), 0, [])
        assert {shard.name: shard.read_bytes() for shard in out.glob("*.safetensors")} == written


# --------------------------------------------------------------------------------------- registry


def test_registry_resolves_lazily_and_suggests_names(tmp_path: Path) -> None:
    registry = fake_registry()
    (tmp_path / "tok").mkdir()
    FakeImageTokenizer("b").save_pretrained(tmp_path / "tok")
    tokenizer = tokenizer_registry.load_tokenizer("image", tmp_path / "tok", registry=registry)
    assert isinstance(tokenizer, FakeImageTokenizer) and tokenizer.salt == "b"
    with pytest.raises(UserError, match="unknown modality 'imgae'; did you mean 'image'"):
        tokenizer_registry.load_tokenizer("imgae", tmp_path / "tok", registry=registry)
    with pytest.raises(UserError, match="needs --tokenizer DIR"):
        tokenizer_registry.load_tokenizer("image", None, registry=registry)
    with pytest.raises(UserError, match="no such tokenizer folder"):
        tokenizer_registry.load_tokenizer("image", tmp_path / "nope", registry=registry)
    with pytest.raises(UserError, match="rule-based: it takes no --tokenizer"):
        tokenizer_registry.load_tokenizer("lmx", tmp_path / "tok")
    with pytest.raises(UserError, match=r"umt\.no_such_module:X is not available"):
        tokenizer_registry.resolve_class("umt.no_such_module:X")
    with pytest.raises(UserError, match="has no class 'Vocabulery'; did you mean 'Vocabulary'"):
        tokenizer_registry.resolve_class("umt.vocab:Vocabulery")
    # The default table names every modality, imports nothing until asked.
    assert tokenizer_registry.default_registry().names() == ["image", "audio", "lmx", "midi", "text"]


# ------------------------------------------------------------------------------- lightning and CLI


def test_lightning_predict_path_matches_the_plain_one(tmp_path: Path) -> None:
    from umt.training.bake import bake_with_lightning

    wavs = make_wavs(tmp_path / "data", 5)
    (tmp_path / "data" / "bad.wav").write_bytes(b"RIFF....WAVEnot really")
    manifest = write_manifest(tmp_path / "m.jsonl", [*wavs, tmp_path / "data" / "bad.wav"])
    tokenizer = FakeAudioTokenizer()
    summary = bake_with_lightning(
        manifest,
        tmp_path / "out",
        tokenizer,
        VOCAB,
        variants=2,
        accelerator="cpu",
        devices=1,
        batch_size=2,
        num_workers=0,
        progress=False,
    )
    assert summary.items_written == 10 and summary.is_global_zero
    assert [(f.key, f.reason) for f in summary.failures] == [
        ("bad", "not a readable audio file (LibsndfileError)")
    ]
    assert_shards_match(tmp_path / "out", tokenizer, {p.stem: p for p in wavs}, [0, 1])
    assert json.loads((tmp_path / "out" / FAILURES_FILE).read_text())["failed"] == 1


def test_short_work_lists_are_padded_for_every_rank_and_spawn_is_refused(tmp_path: Path) -> None:
    from umt.data.bake import BakeDataset, collate_entries
    from umt.training.bake import bake_with_lightning

    wavs = make_wavs(tmp_path / "data", 1)
    entry = ManifestEntry("clip0", wavs[0])
    dataset = BakeDataset([entry], FakeAudioTokenizer(), min_length=3)
    assert len(dataset) == 3 and dataset[1] is None and dataset[2] is None
    batch = collate_entries([dataset[0], dataset[1]])
    assert [loaded.entry for loaded in batch] == [entry] and batch[0].error is None
    manifest = write_manifest(tmp_path / "m.jsonl", wavs)
    with pytest.raises(UserError, match="strategy 'ddp_spawn' is not supported for baking"):
        bake_with_lightning(manifest, tmp_path / "out", FakeAudioTokenizer(), VOCAB, strategy="ddp_spawn")


class ExplodingAudioTokenizer(FakeAudioTokenizer):
    """Fails hard (not a per-file problem) on the Nth tokenize call, like a job being killed."""

    def __init__(self, explode_at: int | None) -> None:
        self.calls = 0
        self.explode_at = explode_at

    def tokenize(self, x: torch.Tensor, vocab) -> np.ndarray:
        self.calls += 1
        if self.calls == self.explode_at:
            raise SystemExit("killed")  # a BaseException: not caught as a per-file failure
        return super().tokenize(x, vocab)


def test_lightning_run_interrupted_then_rerun_completes(tmp_path: Path) -> None:
    from umt.training.bake import bake_with_lightning

    wavs = make_wavs(tmp_path / "data", 6)
    manifest = write_manifest(tmp_path / "m.jsonl", wavs)
    options = dict(
        variants="all", accelerator="cpu", devices=1, batch_size=1, items_per_shard=4, progress=False
    )
    with pytest.raises(SystemExit):
        bake_with_lightning(manifest, tmp_path / "out", ExplodingAudioTokenizer(12), VOCAB, **options)
    partial = raw_items(tmp_path / "out")
    assert len(partial) == 9  # files 0-2 whole (3 variants each), flushed on the way out
    summary = bake_with_lightning(manifest, tmp_path / "out", ExplodingAudioTokenizer(None), VOCAB, **options)
    assert (summary.skipped, summary.items_written) == (3, 9)
    assert_shards_match(tmp_path / "out", FakeAudioTokenizer(), {p.stem: p for p in wavs}, [0, 1, 2])


def test_cli_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from umt.cli import main

    monkeypatch.setattr(tokenizer_registry, "default_registry", fake_registry)
    images = make_images(tmp_path / "data", 3)
    (tmp_path / "data" / "broken.png").write_bytes(b"not an image at all")
    manifest = tmp_path / "files.txt"  # the plain-list form
    manifest.write_text("data/img0.png\ndata/broken.png\ndata/img1.png\ndata/img2.png\n")
    FakeImageTokenizer("a").save_pretrained(tmp_path / "tok")
    argv = ["bake", "image", "--tokenizer", str(tmp_path / "tok"), "--manifest", str(manifest),
            "--out", str(tmp_path / "out"), "--accelerator", "cpu", "--devices", "1", "--variants", "3",
            "--batch-size", "2", "--num-workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"umt: error: {tmp_path / 'data' / 'broken.png'}: UnidentifiedImageError" in err
    assert "3 items" not in err and "9 items written, 1 failed" in err
    assert_shards_match(
        tmp_path / "out", FakeImageTokenizer("a"), {f"data/{p.name}": p for p in images}, [0, 1, 2]
    )
    assert main(argv) == 1  # rerun: the good files are skipped, the broken one is listed again
    assert "3 already baked, 0 items written, 1 failed" in capsys.readouterr().err

    assert main([*argv[:2], *argv[4:]]) == 2  # no --tokenizer
    assert "umt: error: baking image needs --tokenizer DIR" in capsys.readouterr().err
    manifest.write_text('{"path": "data/img0.png"}\n{"path" "x"}\n')
    assert main(argv) == 2
    assert f"umt: error: {manifest}: line 2: not valid JSON" in capsys.readouterr().err


class ModelAudioTokenizer(FakeAudioTokenizer):
    """Keeps its model as an ``nn.Module`` attribute (as ``AudioTokenizer.codec`` does) and records
    on which devices the input and the model were when tokenizing."""

    fingerprint = "fake-model-audio-1"

    def __init__(self) -> None:
        self.codec = torch.nn.Linear(1, 1, bias=False)
        self.devices: list[tuple[str, str]] = []

    def tokenize(self, x: torch.Tensor, vocab) -> np.ndarray:
        self.devices.append((x.device.type, self.codec.weight.device.type))
        return super().tokenize(x.cpu(), vocab)

    def to_cpu(self) -> ModelAudioTokenizer:
        self.codec.cpu()
        return self


def bake_model_tokenizer_on(tmp_path: Path, accelerator: str, num_workers: int) -> set[tuple[str, str]]:
    """Bake 3 clips; returns the (input, model) device pairs seen while baking."""
    from umt.training.bake import TokenizerModule, bake_with_lightning

    wavs = make_wavs(tmp_path / "data", 3)
    manifest = write_manifest(tmp_path / "m.jsonl", wavs)
    tokenizer = ModelAudioTokenizer()
    assert list(TokenizerModule(tokenizer, VOCAB, VariantChoice()).tokenizer_modules) == ["codec"]
    summary = bake_with_lightning(
        manifest, tmp_path / "out", tokenizer, VOCAB, accelerator=accelerator, devices=1,
        num_workers=num_workers, progress=False,
    )  # fmt: skip
    assert summary.failures == [] and summary.items_written == 9
    devices = set(tokenizer.devices)
    assert_shards_match(tmp_path / "out", tokenizer.to_cpu(), {p.stem: p for p in wavs}, [0, 1, 2])
    return devices


def test_tokenizer_models_are_moved_with_the_lightning_module(tmp_path: Path) -> None:
    assert bake_model_tokenizer_on(tmp_path, "cpu", num_workers=0) == {("cpu", "cpu")}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_baking_on_a_gpu_puts_model_and_inputs_there(tmp_path: Path) -> None:
    # num_workers=1: the DataLoader worker is forked after the model went to the GPU.
    assert bake_model_tokenizer_on(tmp_path, "gpu", num_workers=1) == {("cuda", "cuda")}


DDP_SCRIPT = """
import json
import os
import sys
sys.path.insert(0, {tests!r})
from test_bake import FakeImageTokenizer
from umt.training.bake import bake_with_lightning
from umt.vocab import default_vocabulary

results = []
for manifest in {manifests!r}:
    summary = bake_with_lightning(
        manifest, {out!r}, FakeImageTokenizer(), default_vocabulary(), variants=2, accelerator="cpu",
        devices=2, strategy="ddp", batch_size=2, items_per_shard=3, progress=False,
    )
    results.append([summary.is_global_zero, summary.skipped, summary.items_written, len(summary.failures)])
with open(f"result-{{os.getpid()}}.json", "w") as handle:
    json.dump(results, handle)
"""


def test_two_process_ddp_bakes_every_item_exactly_once(tmp_path: Path) -> None:
    images = make_images(tmp_path / "data", 8)
    (tmp_path / "data" / "bad.png").write_bytes(b"xx")
    first = write_manifest(tmp_path / "m1.jsonl", [*images[:3], tmp_path / "data" / "bad.png", *images[3:7]])
    # The rerun has one new file: rank 1 gets no batch at all, and must neither hang nor fail.
    second = write_manifest(tmp_path / "m2.jsonl", images)
    script = tmp_path / "bake_ddp.py"
    script.write_text(
        DDP_SCRIPT.format(
            tests=str(REPO / "tests"), manifests=[str(first), str(second)], out=str(tmp_path / "out")
        )
    )
    env = checkout_env(OMP_NUM_THREADS="1")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = sorted(json.loads(path.read_text()) for path in tmp_path.glob("result-*.json"))
    # Both ranks report the gathered totals: first 7 good files x 2 variants and one failure; then
    # the 7 are skipped and the new one baked. [is_global_zero, skipped, items_written, failures]
    assert results == [[[False, 0, 14, 1], [False, 7, 2, 0]], [[True, 0, 14, 1], [True, 7, 2, 0]]]
    assert {p.name.split("-")[1] for p in (tmp_path / "out").glob("*.safetensors")} == {
        "rank0000",
        "rank0001",
    }
    assert_shards_match(tmp_path / "out", FakeImageTokenizer(), {p.stem: p for p in images}, [0, 1])
    print(f"ddp bake took {time.monotonic() - start:.1f} s")


# --------------------------------------------------------------------------------- rule-based ones


def test_bake_lmx_from_musicxml(tmp_path: Path) -> None:
    from umt.tokenizers.lmx import linearize

    score = tmp_path / "score.musicxml"
    score.write_text(
        textwrap.dedent(
            """\
            <?xml version="1.0" encoding="UTF-8"?>
            <score-partwise version="4.0">
              <part-list><score-part id="P1"><part-name>P</part-name></score-part></part-list>
              <part id="P1"><measure number="1">
                <attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time>
                  <clef><sign>G</sign><line>2</line></clef></attributes>
                <note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>
              </measure></part>
            </score-partwise>
            """
        )
    )
    (tmp_path / "bad.musicxml").write_text("<score-partwise><oops")
    manifest = tmp_path / "m.txt"
    manifest.write_text("score.musicxml\nbad.musicxml\n")
    tokenizer = tokenizer_registry.load_tokenizer("lmx")
    summary = bake_files(manifest, tmp_path / "out", tokenizer, VOCAB, progress=False)
    assert [f.key for f in summary.failures] == ["bad.musicxml"]
    shards = ShardSet(tmp_path / "out", modality="lmx", vocab_hash=VOCAB.layout_hash, tokenizer_hash="")
    tokens = linearize(score)
    tokens = tokens.split() if isinstance(tokens, str) else tokens
    np.testing.assert_array_equal(shards.get("score.musicxml", 0)[:, 0], [VOCAB.lmx_id(t) for t in tokens])


def test_bake_midi_files(tmp_path: Path) -> None:
    import pretty_midi

    from umt.tokenizers.midi import encode_notes, notes_from_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [
        pretty_midi.Note(velocity=80, pitch=60 + i, start=0.5 * i, end=0.5 * i + 0.4) for i in range(4)
    ]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "a.mid"))
    (tmp_path / "b.mid").write_bytes(b"MThd garbage")
    manifest = tmp_path / "m.txt"
    manifest.write_text("a.mid\nb.mid\n")
    summary = bake_files(
        manifest, tmp_path / "out", tokenizer_registry.load_tokenizer("midi"), VOCAB, progress=False
    )
    assert [f.key for f in summary.failures] == ["b.mid"]
    shards = ShardSet(tmp_path / "out", modality="midi", tokenizer_hash="")
    assert shards.info.window_seconds == 20.0
    segments = encode_notes(notes_from_midi(tmp_path / "a.mid"), VOCAB)
    assert len(segments) == 1 and shards.keys() == ["a.mid@0"]
    baked = shards.get("a.mid@0", 0)
    np.testing.assert_array_equal(baked, VOCAB.single_stream_rows(segments[0][:-1]))
    assert VOCAB.eos("midi") not in baked[:, 0]  # the batch adds the one EOS


def test_cli_vocab_option_names_an_experiment_or_a_file(tmp_path, capsys):
    """``--vocab`` bakes ids of another vocabulary than the paper's (tiny tokenizers need one)."""
    from tests._inference_fixtures import melody_musicxml
    from umt.cli import main
    from umt.cli.bake import vocabulary_option
    from umt.data.shards import ShardSet
    from umt.training.config import compose
    from umt.vocab import default_vocabulary, vocabulary_from_dict

    demo = vocabulary_from_dict(dict(compose(["experiment=demo", "data.root=x"]).vocab))
    assert vocabulary_option("demo").layout_hash == demo.layout_hash != default_vocabulary().layout_hash
    sizes = tmp_path / "vocab.json"
    sizes.write_text('{"vocab": {"num_codebooks": 2, "image_codebooks": 2, "audio_codebooks": 1}}')
    assert vocabulary_option(str(sizes)).num_codebooks == 2

    score = tmp_path / "a.musicxml"
    score.write_text(melody_musicxml())
    manifest = tmp_path / "scores.txt"
    manifest.write_text("a.musicxml\n")
    out = tmp_path / "lmx"
    argv = ["bake", "lmx", "--manifest", str(manifest), "--out", str(out), "--accelerator", "cpu",
            "--devices", "1", "--no-progress"]  # fmt: skip
    assert main([*argv, "--vocab", str(sizes)]) == 0
    rows = ShardSet(out, vocab_hash=vocabulary_option(str(sizes)).layout_hash).get("a.musicxml")
    assert rows.shape[1] == 2
    assert main([*argv, "--vocab", "no_such_experiment"]) == 2
    assert "umt: error: --vocab no_such_experiment: not a file, nor a conf/experiment/ name" in (
        capsys.readouterr().err
    )
