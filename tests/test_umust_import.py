"""``umt import-umust``: U-MusT's released run folders as UMT models with the same outputs.

The fixtures in ``tests/fixtures/umust/`` (see its README) are random twins of U-MusT's two
translators, made and run with U-MusT's own model code on x-transformers 2.28.2: the image-to-audio
direction (OMR, image-to-audio, MIDI-to-audio) and the audio-to-image one (AMT, audio-to-image,
LMX-to-image), saved as their trainer saves a run, with the teacher-forced logits and greedy
generations their code gave on fixed inputs. The imported models must give the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.interop.umust import import_translator, sides, umt_rows
from umt.interop.umust_run import MODALITY_OF, read_run

FIXTURES = Path(__file__).parent / "fixtures" / "umust"
DIRECTIONS = ("i2a", "a2i")


def _run_dir(direction: str) -> Path:
    return next((FIXTURES / direction).glob("run-*"))


@pytest.fixture(scope="module", params=DIRECTIONS)
def twin(request):
    run = read_run(_run_dir(request.param))
    recorded = json.loads((FIXTURES / request.param / "recorded.json").read_text())
    with np.load(FIXTURES / request.param / "logits.npz") as arrays:
        logits = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    return run, import_translator(run), recorded, logits


def _source(model, run, record) -> tuple[torch.Tensor, torch.Tensor]:
    """Their source ids as UMT rows; an image gets the height row UMT's rows carry (the model does
    not attend to it: ``source_height_rows=False``)."""
    source_ids, _ = sides(run)
    vocab = model.vocab
    rows = umt_rows(torch.tensor(record["src"]), vocab, source_ids)
    mask = torch.tensor(record["src_mask"])
    if record["source_modality"] != "pt":
        return rows, mask
    items = []
    for b, item in enumerate(record["inputs"]):
        length = int(mask[b].sum())
        height = torch.full((1, vocab.num_codebooks), 0)
        height[0, 0] = vocab.height(len(item["codes"]))
        items.append(torch.cat([rows[b, :1], height, rows[b, 1:length]]))
    longest = max(len(item) for item in items)
    out = torch.zeros(len(items), longest, vocab.num_codebooks, dtype=torch.long)
    out_mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for b, item in enumerate(items):
        out[b, : len(item)] = item
        out_mask[b, : len(item)] = True
    return out, out_mask


def _modalities(model, record) -> tuple[torch.Tensor, torch.Tensor]:
    vocab, batch = model.vocab, len(record["src"])
    src = vocab.modality_index(MODALITY_OF[record["source_modality"]])
    tgt = vocab.modality_index(MODALITY_OF[record["target_modality"]])
    return torch.full((batch,), src), torch.full((batch,), tgt)


def _counterparts(model, run, slot: int) -> dict[int, int]:
    """UMT id -> their id, for the choice of codebook ``slot``."""
    from umt.interop.umust import row_equivalents

    _, target_ids = sides(run)
    vocab = model.vocab
    pairs = {}
    for umt_id, theirs in row_equivalents(vocab, target_ids).items():
        if len(theirs) == 1:  # a code: its own codebook
            if any(vocab.codebook_range(m, slot).contains(umt_id) for m in ("image", "audio")):
                pairs[umt_id] = theirs[0]
        elif slot == 0:
            pairs[umt_id] = theirs[0]
    if slot > 0:
        pairs[0] = 0  # PAD in the codebooks a single-stream row leaves empty
    return pairs


def _compare_logits(model, run, record, src, src_mask, theirs) -> int:
    """Assert UMT's teacher-forced logits equal ``theirs`` over each step's allowed ids; how many."""
    vocab = model.vocab
    src_modality, tgt_modality = _modalities(model, record)
    _, target_ids = sides(run)
    tgt = umt_rows(torch.tensor(record["tgt"]), vocab, target_ids)
    tgt_mask = torch.tensor(record["tgt_mask"])
    with torch.no_grad():
        ours = model(src, src_mask, tgt, tgt_mask, tgt_modality, src_modality)
    special = torch.from_numpy(vocab.special_mask)
    compared = 0
    for slot in range(vocab.num_codebooks):
        pairs = _counterparts(model, run, slot)
        for b in range(tgt.shape[0]):
            for t in range(tgt.shape[1] - 1):
                if not tgt_mask[b, t + 1]:
                    continue
                # after a special id in an image/audio row, UMT's codebooks 1.. hold PAD and
                # theirs per-codebook specials: those choices have no common meaning
                if (
                    slot > 0
                    and bool(special[tgt[b, t + 1, 0]])
                    and record["target_modality"] in ("pt", "dac")
                ):
                    continue
                allowed = torch.isfinite(ours[b, t, slot]).nonzero()[:, 0].tolist()
                mine = [u for u in allowed if u in pairs]
                assert mine, (record["task"], slot)
                expected = theirs[b, t, slot, [pairs[u] for u in mine]]
                assert torch.isfinite(expected).all(), (record["task"], slot, b, t)
                torch.testing.assert_close(ours[b, t, slot, mine], expected, atol=1e-4, rtol=1e-4)
                compared += len(mine)
    return compared


def _compare_greedy(model, run, record, src, src_mask) -> None:
    _, target_ids = sides(run)
    src_modality, tgt_modality = _modalities(model, record)
    theirs = umt_rows(torch.tensor(record["greedy"]), model.vocab, target_ids)
    ours = model.generate(src, src_mask, src_modality, tgt_modality, max_len=theirs.shape[1], temperature=0)
    padded = torch.zeros_like(theirs)
    padded[:, : ours.shape[1]] = ours
    assert torch.equal(padded, theirs), record["task"]


def test_teacher_forced_logits_match_theirs(twin):
    run, model, recorded, logits = twin
    compared = 0
    for record in recorded["records"]:
        src, src_mask = _source(model, run, record)
        compared += _compare_logits(model, run, record, src, src_mask, logits[f"{record['task']}_logits"])
    assert compared > 1000


def test_greedy_generations_match_theirs(twin):
    run, model, recorded, _ = twin
    for record in recorded["records"]:
        src, src_mask = _source(model, run, record)
        _compare_greedy(model, run, record, src, src_mask)


def test_images_of_several_systems_match_theirs():
    """Pages of 2 and 3 systems of different heights, as UMT's pipeline flattens them (each system
    with its own height row), give U-MusT's outputs for its layout (every system padded below to
    the tallest with the pad code, a separator row in every codebook; recorded in
    ``i2a/systems.json``): the imported model lays them out as U-MusT does (``source_systems``)."""
    from umt.tokenizers.image import flatten_systems

    run = read_run(_run_dir("i2a"))
    model = import_translator(run)
    assert model.config.source_systems == "umust"
    vocab = model.vocab
    recorded = json.loads((FIXTURES / "i2a" / "systems.json").read_text())
    with np.load(FIXTURES / "i2a" / "systems_logits.npz") as arrays:
        logits = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    items = []
    for item in recorded["records"][0]["inputs"]:
        content = flatten_systems([np.array(crop) for crop in item["crops"]], vocab)
        sos, eos = vocab.special_row(vocab.sos("image")), vocab.special_row(vocab.eos("image"))
        items.append(torch.from_numpy(np.concatenate([sos[None], content, eos[None]])))
    from umt.models.source_layout import laid_out_rows

    assert laid_out_rows(items[0][1:-1], vocab) == (1 + 4 * 2) + 1 + (1 + 4 * 2)  # crops 2x2 and 4x2
    assert laid_out_rows(items[1][1:-1], vocab) == (1 + 4) + (1 + 8) + (1 + 4) + 2  # 3x1, 1x2, 4x1
    src = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    src_mask = torch.nn.utils.rnn.pad_sequence(
        [torch.ones(len(i), dtype=torch.bool) for i in items], batch_first=True
    )
    compared = 0
    for record in recorded["records"]:
        compared += _compare_logits(model, run, record, src, src_mask, logits[f"{record['task']}_logits"])
        _compare_greedy(model, run, record, src, src_mask)
    assert compared > 300
    plain = import_translator(run)
    plain.config.source_systems = "umt"  # UMT's own layout reads them otherwise
    with torch.no_grad():
        record = recorded["records"][1]
        mine, _ = plain.prepare_source(src, src_mask, _modalities(plain, record)[0])
    assert torch.equal(mine, src)


def test_every_task_of_both_directions_is_covered():
    from umt.interop.umust import tasks_of

    covered = {}
    for direction in DIRECTIONS:
        run = read_run(_run_dir(direction))
        recorded = json.loads((FIXTURES / direction / "recorded.json").read_text())
        covered[direction] = sorted(record["task"] for record in recorded["records"])
        assert covered[direction] == sorted(tasks_of(run))
    assert covered == {"i2a": ["i2a", "m2a", "omr"], "a2i": ["a2i", "amt", "l2i"]}


def test_their_midi_outputs_never_end_on_eos_and_the_option_says_so():
    """U-MusT's MIDI EOS row pads codebooks 1.. with an id its masks forbid there, so its MIDI
    outputs run to the length limit: the AMT twin emits EOS and goes on. UMT reproduces that with
    ``stop_at_midi_eos=False`` (what the import sets); with the default it stops there."""
    from dataclasses import replace

    from umt.models.translator import Translator

    run = read_run(_run_dir("a2i"))
    model = import_translator(run)
    record = next(
        r
        for r in json.loads((FIXTURES / "a2i" / "recorded.json").read_text())["records"]
        if r["task"] == "amt"
    )
    src, src_mask = _source(model, run, record)
    src_modality, tgt_modality = _modalities(model, record)
    eos = model.vocab.eos("midi")
    imported = model.generate(src, src_mask, src_modality, tgt_modality, max_len=12, temperature=0)
    assert (imported[:, 1:, 0] == eos).any() and imported.shape[1] == 12
    stopping = Translator(replace(model.config, stop_at_midi_eos=True), model.vocab)
    stopping.load_state_dict(model.state_dict())
    stopped = stopping.eval().generate(src, src_mask, src_modality, tgt_modality, max_len=12, temperature=0)
    ended = (stopped[:, :, 0] == eos).float().argmax(1)
    for b in range(stopped.shape[0]):
        if ended[b] > 0:
            assert (stopped[b, ended[b] + 1 :] == 0).all()  # nothing after EOS
    assert not torch.equal(stopped, imported[:, : stopped.shape[1]]) or stopped.shape != imported.shape


def test_the_published_layout_is_read(tmp_path):
    """The latest ``iter{N}_loss{L}.pt`` is taken (not an older one, not ``last_checkpoint.pt``),
    the wandb-style config is unwrapped, and the checkpoint keys are their trainer's."""
    run = read_run(_run_dir("i2a"))
    assert run.iteration == 30000 and run.checkpoint.name == "iter30000_loss1.2345.pt"
    assert run.data["in_modal_type"] == ["pt", "midi"] and run.data["out_modal_type"] == ["lmx", "dac"]
    assert run.nn["model_name"] == "MultimodalTranslator"
    raw = torch.load(run.checkpoint, weights_only=True)
    assert sorted(raw) == ["iter", "loss", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict"]
    assert any(key.endswith("to_out.0.weight") for key in run.state)  # their extra dropouts shift names


def _copy_run(tmp_path: Path, direction: str = "i2a") -> Path:
    import shutil

    target = tmp_path / _run_dir(direction).name
    shutil.copytree(_run_dir(direction), target)
    return target


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_run_folders_are_one_line_and_write_nothing(tmp_path, capsys):
    import pickle

    from umt.cli import main

    def attempt(run_dir: Path, expected: str) -> None:
        out = tmp_path / "out"
        assert main(["import-umust", str(run_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        assert not out.exists()

    attempt(tmp_path / "nowhere", "not a U-MusT run folder")
    run = _copy_run(tmp_path / "a")
    (run / "files" / "config.yaml").unlink()
    attempt(run, "no files/config.yaml")
    run = _copy_run(tmp_path / "b")
    for checkpoint in (run / "files" / "checkpoints").glob("iter*"):
        checkpoint.unlink()
    attempt(run, "no iter{N}_loss{L}.pt checkpoint")
    # a pickle whose payload would create a file, named as their newest checkpoint
    run = _copy_run(tmp_path / "c")
    marker = tmp_path / "payload-ran"
    (run / "files" / "checkpoints" / "iter99999_loss0.1.pt").write_bytes(
        pickle.dumps({"x": _Payload(marker)})
    )
    attempt(run, "refusing to unpickle code")
    assert not marker.exists()
    # a config from a U-MusT version with settings this importer does not know
    run = _copy_run(tmp_path / "d")
    config = run / "files" / "config.yaml"
    config.write_text(
        config.read_text().replace("    model_dim: 64", "    model_dim: 64\n    rope_scale: 2.0")
    )
    attempt(run, "unknown model setting nn_params.rope_scale")
    # weights that do not fit the config
    run = _copy_run(tmp_path / "e")
    text = (run / "files" / "config.yaml").read_text()
    (run / "files" / "config.yaml").write_text(text.replace("codebook_size: 64", "codebook_size: 32"))
    attempt(run, "config and weights disagree")
    run = _copy_run(tmp_path / "f")
    text = (run / "files" / "config.yaml").read_text()
    (run / "files" / "config.yaml").write_text(
        text.replace("model_name: MultimodalTranslator", "model_name: LMX2VQAMT")
    )
    attempt(run, "not U-MusT's MultimodalTranslator")
    run = _copy_run(tmp_path / "g")
    (run / "files" / "config.yaml").write_text("nn_params: [unclosed\n")
    attempt(run, "not a readable YAML config")
    # a tokenizer whose codebooks do not fit the run's (32 codes where the run has 64)
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.image import new_tokenizer

    new_tokenizer(tiny_rqvae_config()).save_pretrained(tmp_path / "tok32")
    out = tmp_path / "out"
    args = ["import-umust", str(_run_dir("i2a")), "--out", str(out), "--tokenizer", str(tmp_path / "tok32")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image tokenizer makes 4 x 32 codes; the model's vocabulary has 4 x 64" in err[0]
    assert not out.exists()


def test_import_is_byte_identical_when_repeated_and_after_a_reload(tmp_path):
    from umt.cli import main
    from umt.pretrained import from_pretrained, read_config, save_translator

    for name in ("first", "second"):
        assert main(["import-umust", str(_run_dir("a2i")), "--out", str(tmp_path / name)]) == 0
    for file in ("config.json", "model.safetensors"):
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "second" / file).read_bytes()
    config = read_config(tmp_path / "first")
    assert config["tasks"] == ["amt", "a2i", "l2i"] and config["imported_from"]["iteration"] == 30000
    model = from_pretrained(tmp_path / "first")
    save_translator(
        model,
        tmp_path / "again",
        config["tasks"],
        window_seconds=config["window_seconds"],
        provenance=config["imported_from"],
    )
    for file in ("config.json", "model.safetensors"):
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "again" / file).read_bytes()


@pytest.fixture(scope="module")
def imported_with_tokenizers(tmp_path_factory) -> Path:
    """The image-to-audio twin imported with tiny tokenizers whose codebooks fit it (64 codes)."""
    from umt.cli import main
    from umt.models.dac import DAC, DACConfig
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.audio import AudioTokenizer
    from umt.tokenizers.image import new_tokenizer

    root = tmp_path_factory.mktemp("imported")
    torch.manual_seed(0)
    new_tokenizer(tiny_rqvae_config(n_embed=64)).save_pretrained(root / "tok" / "image")
    AudioTokenizer(DAC(DACConfig.tiny())).save_pretrained(root / "tok" / "audio")
    tokenizers = ["--tokenizer", str(root / "tok" / "image"), "--tokenizer", str(root / "tok" / "audio")]
    assert main(["import-umust", str(_run_dir("i2a")), "--out", str(root / "model"), *tokenizers]) == 0
    return root / "model"


def test_umt_translate_runs_an_imported_model(imported_with_tokenizers, tmp_path, monkeypatch):
    """``umt translate`` on the imported image-to-audio twin: OMR writes a score, image-to-audio a
    recording; its tokenizers' fingerprints are in the folder."""
    from PIL import Image

    from umt.cli import main
    from umt.pretrained import read_config

    config = read_config(imported_with_tokenizers)
    assert set(config["tokenizers"]) == {"image", "audio"}
    assert all(len(t["fingerprint"]) >= 16 for t in config["tokenizers"].values())
    pixels = np.full((64, 128), 255, np.uint8)
    pixels[10:50:8] = 0  # five staff lines
    pixels[20:40, 30:34] = 0
    Image.fromarray(pixels).save(tmp_path / "system.png")
    monkeypatch.chdir(tmp_path)
    model = str(imported_with_tokenizers)
    assert main(["translate", "--checkpoint", model, "--task", "omr", "system.png", "-o", "out"]) == 0
    assert (tmp_path / "out" / "system.lmx").is_file()
    assert (
        main(
            [
                "translate",
                "--checkpoint",
                model,
                "--task",
                "i2a",
                "system.png",
                "-o",
                "out",
                "--max-len",
                "20",
            ]
        )
        == 0
    )
    import soundfile

    audio, rate = soundfile.read(tmp_path / "out" / "system.wav")
    assert len(audio) > 0 and rate == 44100


def test_fine_tuning_starts_from_an_imported_model(imported_with_tokenizers, tmp_path):
    """``init_from=MODEL_DIR`` trains an imported model like any UMT model: the run takes the
    folder's architecture (U-MusT's options included) and its weights, and moves them."""
    from safetensors.torch import load_file

    from tests._training_fixtures import make_shards
    from umt.pretrained import read_config
    from umt.training.config import compose
    from umt.training.train import train
    from umt.vocab import Vocabulary, vocabulary_from_dict

    config = read_config(imported_with_tokenizers)
    vocab = vocabulary_from_dict(config["vocab"])
    assert isinstance(vocab, Vocabulary)
    shards = make_shards(tmp_path / "shards", vocab)
    overrides = [
        "experiment=tiny",
        f"data.root={shards}",
        f"run_dir={tmp_path / 'run'}",
        f"init_from={imported_with_tokenizers}",
        "trainer.max_steps=3",
        "logger.kind=none",
        *(f"vocab.{key}={value}" for key, value in config["vocab"].items() if key != "modalities"),
    ]
    trainer = train(compose(overrides))
    assert trainer.global_step == 3
    translator = trainer.lightning_module.translator
    assert translator.config.separate_embeddings and translator.config.positions == "umust"
    start = load_file(str(imported_with_tokenizers / "model.safetensors"))
    trained = {k: v.detach().cpu() for k, v in translator.state_dict().items()}
    moved = [name for name, value in start.items() if not torch.equal(value, trained[name])]
    assert moved  # training changed weights ...
    near = [name for name, value in start.items() if (value - trained[name]).abs().max() < 0.05]
    assert len(near) == len(start)  # ... starting from the imported ones (3 small steps away)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_imported_twin_runs_on_cuda_as_on_the_cpu():
    for direction in DIRECTIONS:
        run = read_run(_run_dir(direction))
        model = import_translator(run).cuda()
        recorded = json.loads((FIXTURES / direction / "recorded.json").read_text())
        _, target_ids = sides(run)
        for record in recorded["records"]:
            src, src_mask = _source(model, run, record)
            src_modality, tgt_modality = _modalities(model, record)
            theirs = umt_rows(torch.tensor(record["greedy"]), model.vocab, target_ids)
            args = (src.cuda(), src_mask.cuda(), src_modality.cuda(), tgt_modality.cuda())
            ours = model.generate(*args, max_len=theirs.shape[1], temperature=0).cpu()
            padded = torch.zeros_like(theirs)
            padded[:, : ours.shape[1]] = ours
            assert torch.equal(padded, theirs), (direction, record["task"])
