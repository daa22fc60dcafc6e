"""Structured (typed) Hydra configs: a typo'd key or a wrong type fails when the config is composed.

The schema ``train_schema`` is registered in Hydra's ConfigStore by :func:`register_configs`;
``conf/train.yaml`` lists it first in its defaults. The model and vocabulary nodes mirror the
fields of :class:`umt.models.translator.TranslatorConfig` and :class:`umt.vocab.VocabConfig`, so
they can never drift from the code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from umt.modalities.windows import WINDOW_SECONDS
from umt.vocab import VocabConfig


def _mutable_node(cls: type, name: str) -> type:
    """A plain (non-frozen) dataclass with ``cls``'s fields and defaults, ``X | None`` -> Optional."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = Optional[args[0]]  # noqa: UP045 - OmegaConf wants typing.Optional
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        specs.append((f.name, hint, field(default=default)))
    return dataclasses.make_dataclass(name, specs)


def _model_node() -> type:
    from umt.models.translator import TranslatorConfig

    return _mutable_node(TranslatorConfig, "ModelNode")


VocabNode = _mutable_node(VocabConfig, "VocabNode")


@dataclass
class MixtureEntryNode:
    task: str = MISSING
    weight: float = 1.0
    start: int = 0
    full_at: Optional[int] = None  # noqa: UP045
    stop: Optional[int] = None  # noqa: UP045
    datasets: Optional[list[str]] = None  # noqa: UP045


@dataclass
class MixtureNode:
    name: str = MISSING
    description: str = ""
    temperature: float = 1.0
    size_cap: Optional[int] = None  # noqa: UP045
    entries: list[MixtureEntryNode] = field(default_factory=list)


@dataclass
class NeuralModalityNode:
    """One optional value per neural modality, so that ``data.tokenizers.image=DIR`` is a plain
    override (a free-form dict would need Hydra's ``+`` to add a key) and a typo'd modality fails."""

    image: Optional[str] = None  # noqa: UP045
    audio: Optional[str] = None  # noqa: UP045


@dataclass
class DataNode:
    root: str = MISSING
    """Shard root: a directory or an fsspec URL holding ``{dataset}/{modality}/*.safetensors``."""
    cache_dir: Optional[str] = None  # noqa: UP045
    batch_size: int = 12
    num_workers: int = 4
    bucket_pool: int = 8
    condition_dropout: float = 0.0
    """How often a text source (a prompt) is replaced by an empty one in training: the unconditional
    examples that classifier-free guidance (``umt translate --guidance``) needs."""
    pin_memory: bool = False
    prefetch_factor: int = 2
    max_len: dict[str, Optional[int]] = field(  # noqa: UP045
        default_factory=lambda: {"image": None, "audio": 1723, "lmx": None, "midi": 1000}
    )
    """Content rows per modality (no SOS/EOS); longer examples are skipped and counted (never cut:
    audio and MIDI come in ``window_seconds`` windows from baking)."""
    window_seconds: float = WINDOW_SECONDS
    """The wall-clock window of audio and MIDI items (:mod:`umt.modalities.windows`): the shards must have
    been baked with it, and the exported model translates in windows of this length."""
    tokenizer_hashes: NeuralModalityNode = field(default_factory=lambda: NeuralModalityNode())
    """Expected tokenizer fingerprints by modality (shards with another one are refused)."""
    tokenizers: NeuralModalityNode = field(default_factory=lambda: NeuralModalityNode())
    """Tokenizer folders by modality (``image``, ``audio``): the shards must have been baked with
    them (their fingerprints are expected like ``tokenizer_hashes``), and with
    ``init_codebook_embeddings`` their codebooks initialise the model's token embeddings."""


@dataclass
class OptimNode:
    """The translator's optimiser (AdamW, linear warm-up, cosine decay): the one place its defaults
    live (:class:`~umt.training.translation.TranslationModule` fills missing keys from here)."""

    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 2000
    decay_steps: Optional[int] = None  # noqa: UP045
    """Steps of the cosine decay after warm-up (None: until trainer.max_steps)."""
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    fused: Optional[bool] = None  # noqa: UP045
    """Fused AdamW kernel; None: where torch has one and no fp16 gradient scaler is used."""
    loss_average: str = "token"
    """"token": mean cross-entropy over every counted target token (tasks weigh in by their
    tokens); "example": per-example means averaged (tasks weigh in by their sampling rates)."""


@dataclass
class TrainerNode:
    max_steps: int = 600_000
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    """Lightning strategy: "auto", "ddp", "fsdp", "deepspeed", ..."""
    precision: str = "bf16-mixed"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float = 1.0
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 5000
    keep_checkpoints: int = 3
    enable_progress_bar: bool = True
    deterministic: bool = False
    task_metrics_every_n_steps: Optional[int] = None  # noqa: UP045
    """Per-task loss/accuracy (an extra no-grad pass per task); None: every log_every_n_steps."""


@dataclass
class LoggerNode:
    kind: str = "csv"
    """"csv", "tensorboard" or "wandb"."""
    project: str = "umt"
    name: Optional[str] = None  # noqa: UP045
    offline: bool = True
    """wandb only: offline works without an account."""


@dataclass
class AutoencoderNode:
    """The sheet-music autoencoder's run (``family: sheet_autoencoder``; :mod:`umt.training.autoencoder`)."""

    patches: Optional[str] = None  # noqa: UP045
    """A ``umt data patches`` manifest (its ``label`` fields train the head)."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    dropout: float = 0.25
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    validation: float = 0.2
    """Share of the pages held out (their patches together)."""
    head_weight: float = 1.0


@dataclass
class SimObjectivesNode:
    """Weights of SIM's objectives (:data:`umt.sim.objectives.OBJECTIVES`; 0 leaves one out)."""

    match: float = 1.0
    masked_bars: float = 1.0
    contrastive: float = 0.0


@dataclass
class SimNode:
    """SIM pre-training (``family: sim``; :mod:`umt.training.sim`); ``model`` is added by
    :func:`_sim_node` (it mirrors :class:`umt.models.sim.SimConfig`, which imports torch)."""

    manifest: Optional[str] = None  # noqa: UP045
    """A manifest of aligned score images and music (:mod:`umt.sim.items`)."""
    image_tokenizer: Optional[str] = None  # noqa: UP045
    label_field: Optional[str] = "metadata.composer"  # noqa: UP045
    """The dotted record field the downstream probe predicts."""
    objectives: SimObjectivesNode = field(default_factory=SimObjectivesNode)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    hard_share: float = 0.5
    """Share of the match objective's negatives drawn from the same piece."""
    mask_share: float = 0.3
    """Share of an item's bars masked (at least one)."""
    test_split: str = "test"


def _sim_node() -> type:
    from umt.models.sim import SimConfig

    model_node = _mutable_node(SimConfig, "SimModelNode")
    return dataclasses.make_dataclass(
        "SimNodeWithModel", [("model", model_node, field(default_factory=model_node))], bases=(SimNode,)
    )


_SCHEMA: type | None = None


def train_schema() -> type:
    """The top-level schema (built once: it mirrors TranslatorConfig, which imports torch)."""
    global _SCHEMA
    if _SCHEMA is None:
        ModelNode = _model_node()
        sim_node = _sim_node()
        _SCHEMA = dataclasses.make_dataclass(
            "TrainConfig",
            [
                ("model", ModelNode, field(default_factory=ModelNode)),
                ("vocab", VocabNode, field(default_factory=VocabNode)),
                ("mixture", MixtureNode, field(default_factory=MixtureNode)),
                ("data", DataNode, field(default_factory=DataNode)),
                ("optim", OptimNode, field(default_factory=OptimNode)),
                ("trainer", TrainerNode, field(default_factory=TrainerNode)),
                ("logger", LoggerNode, field(default_factory=LoggerNode)),
                ("seed", int, field(default=0)),
                ("run_dir", str, field(default="runs/default")),
                # "auto": continue from run_dir/checkpoints/last.ckpt if there; a path; or null.
                ("resume", Optional[str], field(default="auto")),  # noqa: UP045
                # Weights to start from (.ckpt or exported folder), e.g. for per-task fine-tuning.
                ("init_from", Optional[str], field(default=None)),  # noqa: UP045
                # Image/audio embeddings from the codebooks of data.tokenizers (when given).
                ("init_codebook_embeddings", bool, field(default=True)),
                ("name", str, field(default="default")),
                # What is trained: the translator, the sheet-music autoencoder or SIM (their nodes below).
                ("family", str, field(default="translator")),
                ("autoencoder", AutoencoderNode, field(default_factory=AutoencoderNode)),
                ("sim", sim_node, field(default_factory=sim_node)),
            ],
        )
    return _SCHEMA


def register_configs() -> None:
    """Put the schema, the model presets and the registered mixtures in Hydra's ConfigStore
    (idempotent). The presets (:meth:`TranslatorConfig.tiny`, :meth:`TranslatorConfig.paper`) and
    the mixtures (:data:`umt.tasks.MIXTURES`) are defined once, in Python; Hydra composes them as
    the ``model`` and ``mixture`` groups (``model=tiny``, ``mixture=omr``) beside ``conf/``."""
    from hydra.core.config_store import ConfigStore

    from umt.models.translator import TranslatorConfig
    from umt.tasks import MIXTURES

    store = ConfigStore.instance()
    store.store(name="train_schema", node=train_schema())
    store.store(group="model", name="tiny", node=TranslatorConfig.tiny().to_dict())
    store.store(group="model", name="paper", node=TranslatorConfig.paper().to_dict())
    for name in MIXTURES.names():
        store.store(group="mixture", name=name, node=MIXTURES.get(name).to_dict())


def validate(cfg: DictConfig) -> DictConfig:
    """Merge ``cfg`` onto the schema (fails on unknown keys / wrong types); returns the typed config."""
    schema = OmegaConf.structured(train_schema())
    merged = OmegaConf.merge(schema, cfg)
    OmegaConf.set_struct(merged, True)
    return merged


def conf_dir() -> str:
    """The repository's ``conf/`` directory."""
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2] / "conf")


def compose(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """Compose ``conf/train.yaml`` with command-line style overrides (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides or []))


def experiment_vocab(name: str) -> dict:
    """The ``vocab`` node of ``conf/experiment/<name>.yaml`` (composed) as a plain dict of
    :class:`~umt.vocab.VocabConfig` fields; Hydra's exception when there is no such experiment."""
    return OmegaConf.to_container(compose([f"experiment={name}", "data.root=unused"]).vocab, resolve=True)
