"""Logit filters: small steps from logits to the distribution an id is drawn from (as in whisper's
``LogitFilter`` s and transformers' ``LogitsProcessor`` s).

A filter takes logits ``[N, V]`` (``-inf`` = barred) and the ids already chosen in the same
codebook, ``previous [N, T]`` (``T`` may be 0), and returns new logits. :func:`sampling_filters`
builds the usual chain from ``temperature`` / ``top_k`` / ``top_p`` / ``repetition_penalty``;
:func:`choose` runs a chain and draws one id per row (or takes the argmax when ``greedy``). The
modality masks are not a filter here: the translator's restricted heads never compute the barred
logits in the first place (:mod:`umt.models.translator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


class LogitFilter:
    """``filter(logits [N, V], previous [N, T]) -> logits [N, V]``."""

    def __call__(self, logits: Tensor, previous: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Temperature(LogitFilter):
    """Divides the logits: below 1 sharpens the distribution, above 1 flattens it."""

    value: float

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.value}")

    def __call__(self, logits: Tensor, previous: Tensor) -> Tensor:
        return logits / self.value


@dataclass(frozen=True)
class TopK(LogitFilter):
    """Keeps the ``k`` largest logits of each row (ties at the k-th value are kept too)."""

    k: int

    def __call__(self, logits: Tensor, previous: Tensor) -> Tensor:
        kth = torch.topk(logits, min(self.k, logits.shape[-1]), dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))


@dataclass(frozen=True)
class TopP(LogitFilter):
    """Nucleus: keeps the most likely ids whose mass, before each, is below ``p`` (the most likely
    id always stays)."""

    p: float

    def __call__(self, logits: Tensor, previous: Tensor) -> Tensor:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass strictly above each candidate
        drop = before >= self.p
        drop[..., 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@dataclass(frozen=True)
class RepetitionPenalty(LogitFilter):
    """CTRL's penalty (Keskar et al. 2019): the logit of an id already chosen in this codebook is
    divided by ``penalty`` when positive and multiplied by it when negative. PAD (id 0) is exempt:
    it fills the unused codebooks of every row."""

    penalty: float

    def __post_init__(self) -> None:
        if self.penalty < 1.0:
            raise ValueError(f"repetition penalty must be >= 1, got {self.penalty}")

    def __call__(self, logits: Tensor, previous: Tensor) -> Tensor:
        if previous.shape[-1] == 0 or self.penalty == 1.0:
            return logits
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, previous, True)
        seen[..., 0] = False
        penalised = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(seen, penalised, logits)


def sampling_filters(
    temperature: float, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0
) -> list[LogitFilter]:
    """The chain for these settings, in the usual order: repetition, temperature, top-k, top-p.
    ``temperature == 0`` (greedy) leaves out the temperature."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    chain: list[LogitFilter] = []
    if repetition_penalty != 1.0:
        chain.append(RepetitionPenalty(repetition_penalty))
    if temperature > 0:
        chain.append(Temperature(temperature))
    if top_k > 0:
        chain.append(TopK(top_k))
    if top_p < 1.0:
        chain.append(TopP(top_p))
    return chain


def choose(
    logits: Tensor,
    filters: Sequence[LogitFilter] = (),
    previous: Tensor | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ids ``[N]`` from logits ``[N, V]``: the argmax of the filtered logits when ``greedy``, else a
    draw from their softmax with ``generator``."""
    if previous is None:
        previous = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
    for logit_filter in filters:
        logits = logit_filter(logits, previous)
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
