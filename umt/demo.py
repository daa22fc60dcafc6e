"""The end-to-end demo (``umt demo``, the README's main command), from nothing to an HTML report.

Stages, each in its own folder under ``out`` and each skipped when a rerun finds it finished (kill
the demo at any point and run the same command again to finish it):

1. ``corpus/``: excerpts of music21's scores and generated piano pieces in all four modalities
   (:mod:`umt.data.corpus_builder`);
2. ``tokenizers/image``, ``tokenizers/audio``: a small RQ-VAE and a small DAC trained on the
   corpus's training split (``conf/tokenizer/{rqvae,dac}_demo.yaml``);
3. ``shards/music21/{image,lmx,midi,audio}``: the training split baked into token shards;
4. ``run/``: the image-to-audio-direction Translator (``conf/experiment/demo.yaml``) trained with
   the curriculum OMR -> + MIDI-to-audio -> + image-to-audio (``umt.tasks.MIXTURES["demo"]``, its
   steps scaled to ``translator_steps``, OMR weighted ``omr_weight``); ``run/model`` is the
   exported model folder;
5. ``eval/``: OMR, the cascade and direct image-to-audio on held-out systems
   (:mod:`umt.evaluation`);
6. ``report.html``: a self-contained page with every input, output, curve and figure.

``demo.json`` records the settings; a rerun with other settings into the same folder is refused.
``timings.json`` records each stage's wall time, which the report shows as the budget used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile
import torch

from umt.cli.tokenizer import compose_tokenizer_config
from umt.data.bake import bake_files
from umt.data.corpus_builder import BuildOptions, read_manifest
from umt.data.corpus_builder import build_corpus as build
from umt.data.render import STAFF_HEIGHT_PX
from umt.errors import UserError
from umt.evaluation import corpus_excerpts, evaluate_image_to_audio
from umt.inference import GenerationConfig, TranslationPipeline
from umt.pretrained import export_checkpoint
from umt.report import write_report
from umt.tasks import BUILTIN_DATASET
from umt.training.config import compose, experiment_vocab, validate
from umt.training.dac import train_dac
from umt.training.rqvae import train_rqvae
from umt.training.train import train
from umt.utils.io import atomic_write, atomic_write_text, path_for_list
from umt.vocab import vocabulary_from_dict

SETTINGS_FILE = "demo.json"
IMAGE_FILES = "image-files.txt"  # in tokenizer_runs: the image tokenizer's training images
TIMINGS_FILE = "timings.json"


@dataclass
class DemoSettings:
    """What the demo builds and how long it trains. :data:`PRESETS` holds the named sizes."""

    preset: str = "default"
    # corpus
    sources: tuple[str, ...] = ("bach", "joplin", "schumann", "others")
    max_pieces: int = 12
    """Pieces per corpus source."""
    procedural: int = 150
    """Generated grand-staff piano pieces (150, not 36: with a quarter of the data the model learnt
    LMX's grammar but not to read the image; README, "The demo")."""
    excerpts_per_piece: int = 6
    max_measures: int = 2
    """Excerpts are 1..max_measures measures long (one system each)."""
    staff_height: int = 27
    """Pixels from a staff's top line to its bottom line, in the corpus's images and in the image
    tokenizer's input (its ``preprocess.target_staff_height``). 27, not the renderer's and the
    paper's 18 (:data:`~umt.data.render.STAFF_HEIGHT_PX`): at 18 a staff space is 4.5 px, so one
    row of 8x codes spans about 3.5 pitch steps. With 27 and OMR weight 12 the default demo went
    from held-out SER 82.4 to 74.3 %, cascade onset F1 0.118 to 0.149, validation SER 73.2 to 67.8 %
    and ink F1 0.862 to 0.897, in 73 s less of stage time (weight 12 alone: validation SER 70.1 %);
    at 36, baking took over four times as long (README, "The demo")."""
    # tokenizers
    image_tokenizer_steps: int = 3600
    """3,600, not 3,000: on the 150-piece corpus's images, 3,000 steps left the held-out systems' round
    trip at ink F1 0.848, 3,600 at 0.870 (README, "The demo")."""
    audio_tokenizer_steps: int = 300
    # translator
    translator_steps: int = 1800
    batch_size: int = 8
    omr_weight: float = 12.0
    """OMR's mixture weight (M2A and I2A have 1). The loss is the mean over every counted target
    token, and an audio target (4 codebooks, a few hundred rows) holds about ten times the tokens of
    an LMX target: at equal weights OMR made about 5 % of the loss once I2A had come in, and the
    model never learnt to read the image (default preset, 16 held-out systems, greedy, 400 rows:
    SER 188 % at weight 1, 102 % at weight 4 with every output ending in EOS; the audio tasks'
    training losses unchanged). 12, not 4, on the model of 803f13b: validation SER (48 systems)
    70.1 and 70.4 % (seeds 0 and 1) against 73.2 % at 4 and 80.2 % at 24, and a quarter less
    Translator time (OMR's short targets make cheaper steps)."""
    translator_overrides: tuple[str, ...] = ()
    """Extra Hydra overrides for the translator run (e.g. ``model.d_model=256``)."""
    # evaluation
    eval_excerpts: int = 16
    eval_audio_rows: int = 600
    """Longest generated audio, in codec frames (about 7 s)."""
    eval_audio_temperature: float = 1.0
    eval_audio_top_p: float = 0.9
    """Audio codes are sampled (greedy decoding of codec tokens repeats one frame)."""
    eval_lmx_rows: int = 512
    eval_lmx_repetition_penalty: float = 1.2
    """OMR's greedy decoding repeats a token of the rows it has made this much less likely. Chosen
    on the corpus's validation split, not the held-out test systems: with the default preset's model
    (at 36548e3) validation SER was 99.1 / 88.2 / 73.4 / 77.6 % at 1.0 / 1.1 / 1.2 / 1.3; at 1.0,
    one in five outputs loops on one token (``staccato staccato ...``) until the row limit."""
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


PRESETS: dict[str, DemoSettings] = {
    # About 15-20 minutes on 2 CPU cores.
    "default": DemoSettings(),
    # A couple of minutes: what the tests run end to end.
    "quick": DemoSettings(
        preset="quick",
        sources=("bach",),
        max_pieces=3,
        procedural=3,
        excerpts_per_piece=2,
        image_tokenizer_steps=6,
        audio_tokenizer_steps=3,
        translator_steps=24,
        batch_size=4,
        omr_weight=1.0,  # 24 steps of batch 4: every task must still come up (a smoke test)
        # the paper's small staves: at the default's 27 px the 24-step model's cascade of a held-out
        # system makes no sound, and the web app's checks of the cascade need one
        staff_height=STAFF_HEIGHT_PX,
        translator_overrides=(
            "model.d_model=64",
            "model.ff_dim=128",
            "model.encoder_layers=1",
            "model.decoder_layers=1",
            # Rows, not columns: the 24-step model reading columns writes no pitch at all, so its
            # cascade makes no sound, and the web app's checks of the cascade need one.
            "model.source_columns=false",
            "trainer.log_every_n_steps=2",
        ),
        eval_excerpts=2,
        eval_audio_rows=48,
        eval_lmx_rows=64,
    ),
    # For a GPU: a larger corpus, model and budget (not yet timed: the GPU machine lent to this
    # project lacks FluidSynth, Verovio and cairo for the corpus stage).
    "gpu": DemoSettings(
        preset="gpu",
        sources=("bach", "quartets", "joplin", "schumann", "others"),
        max_pieces=1000,
        procedural=1000,
        excerpts_per_piece=8,
        image_tokenizer_steps=5000,
        audio_tokenizer_steps=5000,
        translator_steps=20000,
        batch_size=32,
        translator_overrides=(
            "model.d_model=512",
            "model.n_heads=8",
            "model.ff_dim=2048",
            "model.encoder_layers=6",
            "model.decoder_layers=6",
            "model.subdecoder_heads=8",
            "trainer.precision=bf16-mixed",
        ),
        eval_excerpts=32,
        eval_audio_rows=1024,
    ),
}


def settings_for(preset: str, **changes: Any) -> DemoSettings:
    """The named preset with ``changes`` (fields left ``None`` keep the preset's value)."""
    if preset not in PRESETS:
        from umt.utils.registry import did_you_mean

        raise UserError(f"unknown demo preset {preset!r}{did_you_mean(preset, list(PRESETS))}")
    known = {f.name for f in dataclasses.fields(DemoSettings)}
    unknown = set(changes) - known
    if unknown:
        raise UserError(f"unknown demo setting(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(PRESETS[preset], **{k: v for k, v in changes.items() if v is not None})


@dataclass
class DemoContext:
    """Where the demo writes, and how it reports."""

    out: Path
    settings: DemoSettings
    device: str = "auto"
    workers: int = 1
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))

    def timings(self) -> dict[str, float]:
        """Seconds per finished stage, from ``timings.json``."""
        return read_timings(self.out)

    @property
    def corpus(self) -> Path:
        return self.out / "corpus"

    @property
    def tokenizer_runs(self) -> Path:
        return self.out / "tokenizers"

    @property
    def shards(self) -> Path:
        return self.out / "shards"

    @property
    def run_dir(self) -> Path:
        return self.out / "run"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    def tokenizer_dir(self, modality: str) -> Path:
        return self.tokenizer_runs / modality / "tokenizer"

    def lightning_devices(self) -> str:
        """Lightning's ``devices`` for :attr:`device`: ``[N]`` for ``cuda:N``, else one device."""
        _, _, index = self.device.partition(":")
        return f"[{int(index)}]" if self.device.startswith("cuda") and index.isdigit() else "1"

    def accelerator(self) -> str:
        if self.device == "auto":
            return "gpu" if torch.cuda.is_available() else "cpu"
        return "gpu" if self.device.startswith("cuda") else "cpu"


# ------------------------------------------------------------------------------ bookkeeping
def _check_settings(context: DemoContext) -> None:
    """Write ``demo.json`` or refuse when the folder holds a demo made with other settings."""
    path = context.out / SETTINGS_FILE
    wanted = context.settings.as_dict()
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except (OSError, json.JSONDecodeError):
            found = None
        if found != wanted:
            changed = sorted(k for k in wanted if (found or {}).get(k) != wanted[k])
            raise UserError(
                f"holds a demo made with other settings ({', '.join(changed)} differ); "
                "choose another --out or remove the folder",
                context.out,
            )
        return
    context.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"format": "umt-demo/1", "settings": wanted}, indent=2) + "\n")


def read_timings(out: Path) -> dict[str, float]:
    path = out / TIMINGS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _record_time(context: DemoContext, stage: str, seconds: float) -> None:
    timings = read_timings(context.out)
    timings[stage] = round(timings.get(stage, 0.0) + seconds, 2)
    atomic_write_text(context.out / TIMINGS_FILE, json.dumps(timings, indent=2) + "\n")


def _stage(context: DemoContext, name: str, work: Callable[[], Any]) -> Any:
    context.log(f"umt demo: {name} ...")
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    _record_time(context, name, elapsed)
    context.log(f"umt demo: {name} done in {elapsed:.1f} s")
    return result


# ---------------------------------------------------------------------------------- stages
def build_corpus(context: DemoContext) -> None:
    s = context.settings
    summary = build(
        BuildOptions(
            out=str(context.corpus),
            sources=list(s.sources),
            max_pieces=s.max_pieces,
            procedural=s.procedural,
            max_excerpts_per_piece=s.excerpts_per_piece,
            max_measures=s.max_measures,
            staff_height=s.staff_height,
            seed=s.seed,
            workers=context.workers,
            progress=context.progress,
        )
    )
    context.log(summary.line())
    splits = {record["split"] for record in _corpus_records(context)}
    if not {"train", "test"} <= splits:
        raise UserError(
            f"the corpus has splits {sorted(splits)}; the demo needs train and test excerpts "
            "(use more pieces)",
            context.corpus,
        )


def _corpus_records(context: DemoContext) -> list[dict]:
    return read_manifest(context.corpus)


def _train_files(context: DemoContext, kind: str) -> list[str]:
    return [
        str(context.corpus / r[kind]) for r in _corpus_records(context) if r["split"] == "train" and r[kind]
    ]


def image_tokenizer_config(context: DemoContext):
    """The composed training config of the demo's image tokenizer (it reads the list of training
    images that :func:`train_image_tokenizer` writes)."""
    return compose_tokenizer_config(
        "rqvae_demo",
        [
            f"data.images='{context.tokenizer_runs / IMAGE_FILES}'",
            f"output_dir='{context.tokenizer_dir('image').parent}'",
            f"trainer.max_steps={context.settings.image_tokenizer_steps}",
            f"preprocess.target_staff_height={float(context.settings.staff_height)}",
            f"trainer.accelerator={context.accelerator()}",
            f"trainer.devices={context.lightning_devices()}",
            f"trainer.enable_progress_bar={context.progress}",
            f"seed={context.settings.seed}",
        ],
    )


def train_image_tokenizer(context: DemoContext) -> Path:
    target = context.tokenizer_dir("image")
    if (target / "config.json").is_file():
        return target
    _file_list(context.tokenizer_runs / IMAGE_FILES, _train_files(context, "png"))
    return train_rqvae(image_tokenizer_config(context))


def train_audio_tokenizer(context: DemoContext) -> Path:
    target = context.tokenizer_dir("audio")
    if (target / "config.json").is_file():
        return target
    manifest = _file_list(context.tokenizer_runs / "audio-files.txt", _train_files(context, "wav"))
    cfg = compose_tokenizer_config(
        "dac_demo",
        [
            f"data.files='{manifest}'",
            f"output_dir='{target.parent}'",
            f"num_iters={context.settings.audio_tokenizer_steps}",
            f"trainer.accelerator={context.accelerator()}",
            f"trainer.devices={context.lightning_devices()}",
            f"trainer.enable_progress_bar={context.progress}",
            f"seed={context.settings.seed}",
        ],
    )
    return train_dac(cfg)


def _file_list(path: Path, files: list[str]) -> Path:
    """Write the list of ``files`` that a tokenizer trains on (read back relative to its folder)."""
    if not files:
        raise UserError("the corpus's training split has no files for the tokenizer", path.parent)
    atomic_write_text(path, "".join(path_for_list(f, path.parent) + "\n" for f in files))
    return path


def demo_vocabulary():
    """The vocabulary of ``conf/experiment/demo.yaml`` (the tokenizers are trained to fit it)."""

    return vocabulary_from_dict(experiment_vocab("demo"))


def bake_shards(context: DemoContext) -> dict[str, int]:
    """Bake the corpus's training split into ``shards/music21/<modality>``; items per modality."""
    from umt.tokenizers.registry import load_tokenizer

    vocab = demo_vocabulary()
    records = [r for r in _corpus_records(context) if r["split"] == "train"]
    field_of = {"image": "png", "lmx": "musicxml", "midi": "mid", "audio": "wav"}
    counts = {}
    for modality, key in field_of.items():
        manifest = context.shards / "manifests" / f"{modality}.jsonl"
        lines = [
            json.dumps(
                {
                    "key": r["key"],
                    "path": path_for_list(context.corpus / r[key], manifest.parent),
                    "split": r["split"],
                }
            )
            for r in records
            if r.get(key)
        ]
        atomic_write_text(manifest, "".join(line + "\n" for line in lines))
        directory = context.tokenizer_dir(modality) if modality in ("image", "audio") else None
        tokenizer = load_tokenizer(modality, directory)
        # One variant per file: the demo trains for minutes, shifted copies would not be seen.
        summary = bake_files(
            manifest,
            context.shards / BUILTIN_DATASET / modality,
            tokenizer,
            vocab,
            variants=1,
            progress=context.progress,
        )
        for failure in summary.failures:
            context.log(f"umt demo: bake {modality}: {failure.path}: {failure.reason}")
        counts[modality] = summary.items_written + summary.skipped
    return counts


def translator_config(context: DemoContext):
    """The composed, validated training config of the demo's Translator."""

    s = context.settings
    scale = s.translator_steps / 900  # the demo mixture's steps are for a 900-step run
    overrides = [
        "experiment=demo",
        f"data.root='{context.shards}'",
        f"run_dir='{context.run_dir}'",
        f"trainer.max_steps={s.translator_steps}",
        f"trainer.checkpoint_every_n_steps={max(1, s.translator_steps // 6)}",
        f"trainer.accelerator={context.accelerator()}",
        f"trainer.devices={context.lightning_devices()}",
        f"trainer.enable_progress_bar={context.progress}",
        f"optim.warmup_steps={max(1, s.translator_steps // 18)}",
        f"data.batch_size={s.batch_size}",
        f"seed={s.seed}",
        # the shards must come from these tokenizers; their codebooks initialise the embeddings
        f"data.tokenizers.image='{context.tokenizer_dir('image')}'",
        f"data.tokenizers.audio='{context.tokenizer_dir('audio')}'",
        # the curriculum: OMR from 0, M2A from 20 % (full at 33 %), I2A from 45 % (full at 60 %)
        f"mixture.entries.0.weight={s.omr_weight}",
        f"mixture.entries.1.start={round(180 * scale)}",
        f"mixture.entries.1.full_at={round(300 * scale)}",
        f"mixture.entries.2.start={round(405 * scale)}",
        f"mixture.entries.2.full_at={round(540 * scale)}",
        *s.translator_overrides,
    ]
    return validate(compose(overrides))


def train_translator(context: DemoContext) -> Path:
    """Train (or finish training) the Translator and export ``run/model``; returns the folder."""
    from umt.tokenizers.folders import load_tokenizer

    cfg = translator_config(context)
    last = context.run_dir / "checkpoints" / "last.ckpt"
    if not _finished(last, context.settings.translator_steps):
        train(cfg)
    directories = {m: context.tokenizer_dir(m) for m in ("image", "audio")}
    hashes = {m: load_tokenizer(d).fingerprint for m, d in directories.items()}
    return export_checkpoint(last, context.model_dir, tokenizer_hashes=hashes, tokenizer_dirs=directories)


def _finished(checkpoint: Path, steps: int) -> bool:
    if not checkpoint.is_file():
        return False

    # memory-mapped: only the step counter is read, not the weights and optimizer state
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("global_step", 0)) >= steps


def eval_generation(settings: DemoSettings) -> tuple[GenerationConfig, GenerationConfig]:
    """How the demo's evaluation decodes: LMX greedy with its repetition penalty, audio sampled."""
    lmx = GenerationConfig(
        max_len=settings.eval_lmx_rows,
        batch_size=8,
        seed=settings.seed,
        repetition_penalty=settings.eval_lmx_repetition_penalty,
    )
    audio = GenerationConfig(
        temperature=settings.eval_audio_temperature,
        top_p=settings.eval_audio_top_p,
        max_len=settings.eval_audio_rows,
        batch_size=8,
        seed=settings.seed,
    )
    return lmx, audio


def evaluate(context: DemoContext):
    """Run the held-out evaluation; writes ``eval/metrics.json`` and the outputs; returns it."""

    s = context.settings
    pipeline = TranslationPipeline.from_pretrained(context.model_dir, device=context.device)
    excerpts = corpus_excerpts(context.corpus, "test", limit=s.eval_excerpts)
    generation, audio_generation = eval_generation(s)
    evaluation = evaluate_image_to_audio(
        pipeline, excerpts, context.eval_dir, generation, audio_generation, progress=context.log
    )
    _write_outputs(context, pipeline, excerpts, evaluation)
    return evaluation, excerpts, pipeline.sample_rate


def _write_outputs(context: DemoContext, pipeline, excerpts, evaluation) -> None:
    out = context.eval_dir
    out.mkdir(parents=True, exist_ok=True)
    for result in evaluation.excerpts:
        atomic_write_text(out / f"{result.key}.omr.lmx", " ".join(result.predicted_lmx) + "\n")
        if result.musicxml:
            atomic_write_text(out / f"{result.key}.omr.musicxml", result.musicxml)
        for name, audio in (("cascade", result.cascade_audio), ("direct", result.direct_audio)):
            if audio is not None:
                with atomic_write(out / f"{result.key}.{name}.wav", "wb") as handle:
                    soundfile.write(handle, audio, pipeline.sample_rate, format="WAV", subtype="PCM_16")
    atomic_write_text(out / "metrics.json", json.dumps(evaluation.as_dict(), indent=2) + "\n")


def run_demo(
    out: str | Path,
    settings: DemoSettings,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run (or finish) every stage of the demo in ``out``; returns the report's path."""
    context = DemoContext(
        out=Path(out),
        settings=settings,
        device=device,
        workers=workers or max(1, min(os.cpu_count() or 1, 8)),
        progress=progress,
    )
    if log is not None:
        context.log = log
    _check_settings(context)
    with warnings.catch_warnings():
        # Lightning notes that say nothing about this run (a deprecation inside Lightning itself,
        # and the RQ-VAE module's validation step, which the demo does not use).
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader.*")
        return _run_stages(context)


def _run_stages(context: DemoContext) -> Path:
    started = time.perf_counter()
    _stage(context, "corpus", lambda: build_corpus(context))
    _stage(context, "image tokenizer", lambda: train_image_tokenizer(context))
    _stage(context, "audio tokenizer", lambda: train_audio_tokenizer(context))
    shard_counts = _stage(context, "bake", lambda: bake_shards(context))
    _stage(context, "translator", lambda: train_translator(context))
    evaluation, excerpts, sample_rate = _stage(context, "evaluation", lambda: evaluate(context))

    report = _stage(
        context,
        "report",
        lambda: write_report(context, evaluation, excerpts, sample_rate, shard_counts),
    )
    context.log(f"umt demo: finished in {time.perf_counter() - started:.0f} s; report: {report}")
    return report
