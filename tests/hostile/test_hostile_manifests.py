"""Hostile manifests for the commands that read them (``umt bake``, ``umt eval``): one line naming
the manifest and the line, nothing read outside a prepared data set's folder, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umt.cli import main


def _prepared(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lmx").mkdir(exist_ok=True)
    (root / "lmx" / "a.lmx").write_text("measure clef:G2 C4 quarter\n")
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest


CASES = {
    "escape": (
        [{"key": "a", "lmx": "lmx/a.lmx"}, {"key": "b", "lmx": "../../../../etc/passwd"}],
        "leaves the manifest's folder",
    ),
    "absolute": ([{"key": "a", "lmx": "/etc/passwd"}], "leaves the manifest's folder"),
    "duplicate": ([{"key": "a", "lmx": "lmx/a.lmx"}, {"key": "a", "lmx": "lmx/a.lmx"}], "duplicate key 'a'"),
    "not_json": (None, "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bake_refuses_a_hostile_manifest(tmp_path, capsys, name, monkeypatch):
    records, expected = CASES[name]
    manifest = _prepared(tmp_path / "data", records or [{"key": "a", "lmx": "lmx/a.lmx"}])
    if records is None:
        manifest.write_text('{"key": "a", "lmx": "lmx/a.lmx"}\n{"key": "b", "lmx": \n')
    opened = []
    real_open = Path.open

    def watch(self, *args, **kwargs):
        opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", watch)
    out = tmp_path / "shards"
    assert main(["bake", "lmx", "--manifest", str(manifest), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(manifest) in lines[0] and expected in lines[0], lines
    assert not any("passwd" in path for path in opened)
    assert not out.exists()


def test_eval_refuses_a_path_leaving_the_manifest(tmp_path, capsys):
    from tests import _inference_fixtures as fx

    model = fx.make_model_folder(tmp_path / "model")
    manifest = _prepared(
        tmp_path / "data", [{"key": "a", "split": "test", "image": "../../etc/passwd", "lmx": "lmx/a.lmx"}]
    )
    assert (
        main(
            ["eval", "omr", "--checkpoint", str(model), "--data", str(manifest), "--out", str(tmp_path / "e")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaves the manifest's folder" in err[0]
    assert not (tmp_path / "e").exists()
