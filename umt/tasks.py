"""Translation tasks and task mixtures with a curriculum.

A :class:`Task` names a translation direction (source modality -> target modality) and the
datasets that provide pairs for it. :data:`TASKS` is filled in ONE place, :func:`_register_tasks`
at the bottom of this module; nothing registers itself by being imported elsewhere.

A :class:`Mixture` says how often each *stream* is sampled as training goes on. A stream is one
(task, dataset) pair; a :class:`MixtureEntry` covers one task on some of its datasets with

* ``weight``: a per-example rate. A stream's probability is proportional to
  ``weight * size ** (1 / temperature)`` where ``size`` is the number of examples in the dataset
  (seqio's temperature-scaled rates). ``temperature=1`` is sampling proportional to ``weight x
  size`` (what U-MusT does with its per-sample weights); a large temperature flattens the sizes
  so no large dataset dominates; ``size_cap`` clips huge datasets first (seqio's ``maximum``).
* a curriculum: the stream is off before ``start``, its weight ramps linearly up to the full
  value at ``full_at`` (``full_at <= start`` means a step change), and it is off again from
  ``stop`` on (``None``: never leaves).

The curriculum step is the optimizer's global step. The paper's two schedules (U-MusT
``config/data/multimodal_{omr,amt}_direction.yaml``): the image-to-audio model trains OMR from
step 0, MIDI-to-audio from 15k (full weight at 50k) and image-to-audio from 50k (full at 60k); the
audio-to-image model trains AMT from 0, LMX-to-image from 40k (full at 50k) and audio-to-image
from 70k (full at 90k). :data:`MIXTURES` holds them as ``"i2a_model"`` and ``"a2i_model"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from umt.modalities import check_modality
from umt.utils.registry import Registry


@dataclass(frozen=True)
class Task:
    """One translation direction and the datasets that hold its pairs."""

    name: str
    source: str
    """Source modality (one of :data:`umt.modalities.MODALITY_SPECS`)."""
    target: str
    datasets: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        check_modality(self.source)
        check_modality(self.target)
        if self.source == self.target:
            raise ValueError(f"task {self.name}: source and target modality are both {self.source}")
        if not self.datasets:
            raise ValueError(f"task {self.name}: needs at least one dataset")


TASKS: Registry[Task] = Registry("task")

CASCADE_TASK = "cascade-i2a"
"""Not a model task: image -> LMX (the OMR task of one model) -> MIDI -> audio (the M2A task of
the same or another model), run by :func:`umt.inference.translate_files`."""


def get_task(name: str) -> Task:
    """The registered task ``name`` (``KeyError`` with a did-you-mean hint otherwise)."""
    return TASKS.get(name)


@dataclass(frozen=True)
class MixtureEntry:
    """One task in a mixture, with its rate and curriculum."""

    task: str
    weight: float = 1.0
    start: int = 0
    """First global step at which the task is sampled."""
    full_at: int | None = None
    """Step at which the linear ramp reaches ``weight`` (``None`` or ``<= start``: no ramp)."""
    stop: int | None = None
    """First step at which the task is no longer sampled (``None``: never leaves)."""
    datasets: tuple[str, ...] | None = None
    """A subset of the task's datasets (``None``: all of them)."""

    def __post_init__(self) -> None:
        task = get_task(self.task)
        if self.weight < 0:
            raise ValueError(f"mixture entry {self.task}: weight must be >= 0, got {self.weight}")
        if self.start < 0:
            raise ValueError(f"mixture entry {self.task}: start must be >= 0, got {self.start}")
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(
                f"mixture entry {self.task}: stop {self.stop} must come after start {self.start}"
            )
        for dataset in self.datasets or ():
            if dataset not in task.datasets:
                from umt.utils.registry import did_you_mean

                raise ValueError(
                    f"task {self.task} has no dataset {dataset!r}{did_you_mean(dataset, task.datasets)}"
                )

    @property
    def stream_datasets(self) -> tuple[str, ...]:
        return self.datasets if self.datasets is not None else get_task(self.task).datasets

    def scale(self, step: int) -> float:
        """The curriculum factor in ``[0, 1]`` at global ``step`` (times ``weight`` = the rate)."""
        if step < self.start or (self.stop is not None and step >= self.stop):
            return 0.0
        if self.full_at is None or self.full_at <= self.start or step >= self.full_at:
            return 1.0
        # U-MusT's ramp: 0 at `start`, rising linearly to 1 at `full_at`.
        return (step - self.start) / (self.full_at - self.start)


def stream_name(task: str, dataset: str) -> str:
    return f"{task}/{dataset}"


@dataclass(frozen=True)
class Mixture:
    """Several tasks sampled together with per-stream rates and a curriculum."""

    name: str
    entries: tuple[MixtureEntry, ...]
    temperature: float = 1.0
    size_cap: int | None = None
    description: str = ""
    streams: tuple[tuple[str, str, int], ...] = field(init=False, repr=False)
    """``(task, dataset, entry index)`` for every stream, in a fixed order."""

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError(f"mixture {self.name}: needs at least one entry")
        if self.temperature <= 0:
            raise ValueError(f"mixture {self.name}: temperature must be > 0, got {self.temperature}")
        streams: list[tuple[str, str, int]] = []
        seen: set[str] = set()
        for index, entry in enumerate(self.entries):
            for dataset in entry.stream_datasets:
                name = stream_name(entry.task, dataset)
                if name in seen:
                    raise ValueError(f"mixture {self.name}: stream {name} appears twice")
                seen.add(name)
                streams.append((entry.task, dataset, index))
        object.__setattr__(self, "streams", tuple(streams))

    def to_dict(self) -> dict:
        """A plain mapping :func:`mixture_from_dict` turns back into this mixture (a Hydra node)."""
        entries = []
        for entry in self.entries:
            values = {k: getattr(entry, k) for k in ("task", "weight", "start", "full_at", "stop")}
            values["datasets"] = None if entry.datasets is None else list(entry.datasets)
            entries.append(values)
        return {
            "name": self.name,
            "description": self.description,
            "temperature": self.temperature,
            "size_cap": self.size_cap,
            "entries": entries,
        }

    @property
    def stream_names(self) -> list[str]:
        return [stream_name(task, dataset) for task, dataset, _ in self.streams]

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(entry.task for entry in self.entries))

    def rates(self, step: int, sizes: Mapping[str, int] | None = None) -> dict[str, float]:
        """Sampling probabilities of every stream at global ``step`` (they sum to 1).

        ``sizes`` maps a stream name (``"task/dataset"``) or a dataset name to its number of
        examples; without it every stream counts as size 1 (explicit weights only). Raises
        ``ValueError`` when no stream is active at ``step``.
        """
        raw: dict[str, float] = {}
        for task, dataset, index in self.streams:
            entry = self.entries[index]
            name = stream_name(task, dataset)
            size = 1
            if sizes is not None:
                size = sizes.get(name, sizes.get(dataset, 0))
                if self.size_cap is not None:
                    size = min(size, self.size_cap)
            raw[name] = entry.weight * entry.scale(step) * float(size) ** (1.0 / self.temperature)
        total = sum(raw.values())
        if total <= 0:
            raise ValueError(f"mixture {self.name}: no task is active at step {step}")
        return {name: value / total for name, value in raw.items()}


def mixture_from_dict(name: str, values: Mapping) -> Mixture:
    """Build a mixture from a plain mapping (a Hydra node): ``{entries: [{task, weight, ...}], ...}``."""
    entries = []
    for raw in values.get("entries") or ():
        raw = dict(raw)
        if raw.get("datasets") is not None:
            raw["datasets"] = tuple(raw["datasets"])
        entries.append(MixtureEntry(**raw))
    return Mixture(
        name=name,
        entries=tuple(entries),
        temperature=float(values.get("temperature", 1.0)),
        size_cap=values.get("size_cap"),
        description=str(values.get("description", "")),
    )


MIXTURES: Registry[Mixture] = Registry("mixture")


def get_mixture(name: str) -> Mixture:
    return MIXTURES.get(name)


PAPER_DATASETS: dict[str, tuple[str, ...]] = {
    "omr": ("grandstaff", "olimpic"),  # score images <-> LMX
    "amt": ("maestro", "musicnet", "slakh"),  # audio <-> MIDI
    "i2a": ("ytsv",),  # YouTube Score Video: score images <-> audio
    "a2i": ("ytsv",),
    "m2a": ("maestro", "musicnet", "slakh"),
    "l2i": ("grandstaff", "olimpic"),
}
"""The datasets the paper trains each task on (its mixtures and single-task mixtures use these)."""

BUILTIN_DATASET = "music21"
"""The corpus ``umt corpus build`` makes offline from music21's scores and generated piano pieces:
every excerpt has all four modalities and a metadata prompt, so it serves every task (the demo
trains on it)."""


def _register_tasks() -> None:
    """The one place where tasks and mixtures are registered."""
    for name, source, target, description in (
        ("omr", "image", "lmx", "optical music recognition"),
        ("amt", "audio", "midi", "automatic music transcription"),
        ("i2a", "image", "audio", "score image to performance audio"),
        ("a2i", "audio", "image", "performance audio to score image"),
        ("m2a", "midi", "audio", "MIDI to audio (synthesis)"),
        ("l2i", "lmx", "image", "LMX to score image (engraving)"),
    ):
        TASKS.add(name, Task(name, source, target, (*PAPER_DATASETS[name], BUILTIN_DATASET), description))
    # Beyond the paper: MusicScore's text-to-score-image generation, from a metadata prompt to a
    # page's systems (a vocabulary with the text modality; conf/experiment/musicscore_t2i.yaml).
    TASKS.add(
        "t2i", Task("t2i", "text", "image", ("musicscore", BUILTIN_DATASET), "text prompt to score image")
    )

    # Weights and steps from U-MusT config/data/multimodal_omr_direction.yaml (the I2A model) and
    # multimodal_amt_direction.yaml (the A2I model); there weights are per dataset.
    MIXTURES.add(
        "i2a_model",
        Mixture(
            "i2a_model",
            _i2a_entries(),
            description="the paper's image-to-audio model: OMR from 0, M2A from 15k, I2A from 50k",
        ),
    )
    MIXTURES.add(
        "a2i_model",
        Mixture(
            "a2i_model",
            _a2i_entries(),
            description="the paper's audio-to-image model: AMT from 0, L2I from 40k, A2I from 70k",
        ),
    )
    for task_name in list(TASKS):
        entry = MixtureEntry(task_name, datasets=PAPER_DATASETS.get(task_name, get_task(task_name).datasets))
        MIXTURES.add(task_name, Mixture(task_name, (entry,), description="single task"))
    MIXTURES.add(
        "tiny",
        Mixture(
            "tiny",
            (
                MixtureEntry("omr", 1.0, 0, datasets=("grandstaff",)),
                MixtureEntry("amt", 1.0, 2, 4, datasets=("maestro",)),
            ),
            description="the tiny CPU run's: OMR from step 0, AMT joins at step 2 and ramps up until 4",
        ),
    )
    MIXTURES.add(
        "demo",
        Mixture(
            "demo",
            _demo_entries(),
            description="the demo's image-to-audio model on the built-in corpus: OMR, then M2A, then I2A",
        ),
    )


def _i2a_entries() -> tuple[MixtureEntry, ...]:
    # One entry per (task, dataset) where U-MusT gives datasets different weights.
    return (
        MixtureEntry("omr", 0.04, 0, None, datasets=("grandstaff",)),
        MixtureEntry("omr", 0.05, 0, None, datasets=("olimpic",)),
        MixtureEntry("m2a", 1.0, 15_000, 50_000, datasets=PAPER_DATASETS["m2a"]),
        MixtureEntry("i2a", 0.02, 50_000, 60_000, datasets=PAPER_DATASETS["i2a"]),
    )


def _a2i_entries() -> tuple[MixtureEntry, ...]:
    return (
        MixtureEntry("amt", 4.0, 0, None, datasets=("musicnet",)),
        MixtureEntry("amt", 2.0, 0, None, datasets=("maestro",)),
        MixtureEntry("amt", 1.0, 0, None, datasets=("slakh",)),
        MixtureEntry("l2i", 0.04, 40_000, 50_000, datasets=("grandstaff",)),
        MixtureEntry("l2i", 0.05, 40_000, 50_000, datasets=("olimpic",)),
        MixtureEntry("a2i", 0.015, 70_000, 90_000, datasets=PAPER_DATASETS["a2i"]),
    )


def _demo_entries() -> tuple[MixtureEntry, ...]:
    # The paper's image-to-audio curriculum shrunk to a few hundred steps (``umt demo`` rescales
    # the steps to its budget, and weighs OMR 4x: LMX targets are short and audio targets long, so
    # at equal weights OMR made ~5 % of the loss): OMR from 0, M2A from 20 % of the run, I2A from 45 %.
    on_corpus = (BUILTIN_DATASET,)
    return (
        MixtureEntry("omr", 1.0, 0, None, datasets=on_corpus),
        MixtureEntry("m2a", 1.0, 200, 300, datasets=on_corpus),
        MixtureEntry("i2a", 1.0, 450, 550, datasets=on_corpus),
    )


_register_tasks()
