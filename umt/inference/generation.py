"""Generation settings and the batching loop shared by every task (sort by length, batch, restore order)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from umt.data.pipeline import collate
from umt.errors import UserError
from umt.tasks import Task
from umt.vocab import Vocabulary


@dataclass
class GenerationConfig:
    """How outputs are generated (see :meth:`umt.models.translator.Translator.generate`)."""

    temperature: float = 0.0
    """0 = greedy."""
    top_k: int = 0
    top_p: float = 1.0
    max_len: int | None = None
    """Largest output length in rows, SOS and EOS included (``None``: the model's ``max_target_len``)."""
    batch_size: int = 8
    seed: int = 0
    repetition_penalty: float = 1.0
    """Above 1, ids already chosen in a codebook become less likely (CTRL's penalty; 1 = off)."""
    guidance_scale: float = 1.0
    """Classifier-free guidance for text sources (1 = off; MusicScore used 4): each output is
    pushed away from what the model makes of an empty prompt."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UserError(f"top-k must be >= 0, got {self.top_k}")
        if self.repetition_penalty < 1.0:
            raise UserError(f"repetition penalty must be >= 1, got {self.repetition_penalty}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        if self.guidance_scale < 0:
            raise UserError(f"guidance must be >= 0, got {self.guidance_scale}")
        if self.max_len is not None and self.max_len < 2:
            raise UserError(f"max-len must be >= 2 (SOS and one more row), got {self.max_len}")


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA if available, else Apple MPS, else CPU) or an explicit torch device name."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available")
    return device


@dataclass
class Generated:
    """One unit's output: content rows ``[T, K]`` (no SOS / EOS) and whether EOS ended it."""

    rows: np.ndarray
    finished: bool


@torch.no_grad()
def generate_units(
    model: torch.nn.Module,
    vocab: Vocabulary,
    task: Task,
    sources: Sequence[np.ndarray],
    generation: GenerationConfig | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> list[Generated]:
    """Translate content rows (each ``[S, K]``, no SOS/EOS) from ``task.source`` to ``task.target``.

    Units are sorted by length (longest first), batched, generated and returned in the input order,
    each without its SOS and EOS. ``progress(n)`` is called after each batch with the number of
    units done in it. One ``torch.Generator`` seeded with ``generation.seed`` drives the run.
    """
    generation = generation or GenerationConfig()
    limit = int(model.config.max_target_len)
    max_len = min(generation.max_len or limit, limit)
    empty = np.zeros((0, vocab.num_codebooks), dtype=np.int64)
    results: list[Generated | None] = [
        Generated(empty, True) if len(source) == 0 and task.source == "midi" else None for source in sources
    ]  # an empty MIDI window is silence, not a translation (see TranslationPipeline.segments_audio)
    order = sorted((i for i in range(len(sources)) if results[i] is None), key=lambda i: -len(sources[i]))
    generator = torch.Generator(device=device).manual_seed(int(generation.seed))
    eos = vocab.eos(task.target)
    if progress is not None and len(order) < len(sources):
        progress(len(sources) - len(order))
    for start in range(0, len(order), generation.batch_size):
        chosen = order[start : start + generation.batch_size]
        # The training collate frames the sources (SOS, rows, EOS, PAD), so inference matches it.
        batch = collate([(sources[i], empty, task.source, task.target, 0) for i in chosen], vocab)
        guidance = {}
        if generation.guidance_scale != 1.0 and task.source == "text":  # guided by prompt vs none
            none = collate([(empty, empty, task.source, task.target, 0) for _ in chosen], vocab)
            unconditional = (none["src"].to(device), none["src_mask"].to(device))
            guidance = {"guidance_scale": generation.guidance_scale, "unconditional": unconditional}
        out = model.generate(
            batch["src"].to(device),
            batch["src_mask"].to(device),
            batch["src_modality"].to(device),
            batch["tgt_modality"].to(device),
            max_len=max_len,
            temperature=generation.temperature,
            top_k=generation.top_k,
            top_p=generation.top_p,
            generator=generator,
            repetition_penalty=generation.repetition_penalty,
            **guidance,
        ).cpu()
        for index, rows in zip(chosen, out.numpy()):
            ends = np.flatnonzero(rows[1:, 0] == eos)
            stop = int(ends[0]) + 1 if ends.size else len(rows)
            results[index] = Generated(rows[1:stop].copy(), bool(ends.size))
        if progress is not None:
            progress(len(chosen))
    return results  # type: ignore[return-value]
