"""Logit filters one at a time on hand-made logits, the chain, and the translator using it."""

from __future__ import annotations

import math

import pytest
import torch

from umt.generation.filters import RepetitionPenalty, Temperature, TopK, TopP, choose, sampling_filters
from umt.models.translator import Translator, TranslatorConfig
from umt.vocab import default_vocabulary

NONE = torch.zeros(1, 0, dtype=torch.long)
INF = float("-inf")


def test_each_filter_on_known_logits() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.equal(Temperature(2.0)(logits, NONE), logits / 2)
    assert torch.equal(TopK(2)(logits, NONE), torch.tensor([[INF, 3.0, 2.0, INF]]))
    assert torch.equal(TopK(9)(logits, NONE), logits)  # k above V keeps every id
    # Probabilities 0.5, 0.3, 0.2: the mass before 0.2 is 0.8 >= 0.6, so it goes.
    nucleus = TopP(0.6)(torch.log(torch.tensor([[0.3, 0.5, 0.2]])), NONE)
    assert torch.isfinite(nucleus[0, :2]).all() and nucleus[0, 2] == INF
    assert torch.isfinite(TopP(0.0)(logits, NONE)).sum() == 1  # the most likely id always stays
    previous = torch.tensor([[1, 2, 0]])  # ids 1 and 2 chosen before; PAD is exempt
    penalised = RepetitionPenalty(2.0)(torch.tensor([[2.0, -2.0, 4.0, 1.0]]), previous)
    assert penalised.tolist() == [[2.0, -4.0, 2.0, 1.0]]
    with pytest.raises(ValueError, match=">= 1"):
        RepetitionPenalty(0.5)
    with pytest.raises(ValueError, match="> 0"):
        Temperature(0.0)


def test_the_chain_is_built_in_order_and_greedy_is_the_argmax() -> None:
    chain = sampling_filters(0.7, top_k=5, top_p=0.9, repetition_penalty=1.3)
    assert chain == [RepetitionPenalty(1.3), Temperature(0.7), TopK(5), TopP(0.9)]
    assert sampling_filters(0.0) == [] and sampling_filters(1.0) == [Temperature(1.0)]
    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, 0.0, -1.0]])
    assert choose(logits, greedy=True).tolist() == [1, 0]
    # With a penalty the greedy choice moves off an id already chosen.
    assert choose(logits, [RepetitionPenalty(2.0)], torch.tensor([[1], [2]]), greedy=True).tolist() == [2, 0]


def test_sampling_draws_from_the_filtered_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = [choose(logits, [TopK(2)], generator=generator).item() for _ in range(400)]
    assert set(draws) == {0, 1}
    assert abs(draws.count(0) / 400 - 0.5 / 0.8) < 0.08
    # The same seed, the same draws.
    again = torch.Generator().manual_seed(0)
    assert draws == [choose(logits, [TopK(2)], generator=again).item() for _ in range(400)]
    assert math.isclose(sum(draws) / 400, 0.3 / 0.8, abs_tol=0.08)


def test_translator_applies_the_repetition_penalty() -> None:
    vocab = default_vocabulary()
    torch.manual_seed(0)
    model = Translator(TranslatorConfig.tiny(dropout=0.0), vocab).eval()
    favourite = vocab.lmx_id("quarter")
    with torch.no_grad():
        model.head.bias[favourite] = 10.0  # greedy picks it every step
        model.head.bias[vocab.eos("lmx")] = -100.0
    rows = vocab.single_stream_rows([vocab.sos("lmx"), vocab.lmx_id("C4"), vocab.eos("lmx")])
    src = torch.from_numpy(rows)[None]
    mask = torch.ones(1, len(rows), dtype=torch.bool)
    target = torch.tensor([vocab.modality_index("lmx")])
    plain = model.generate(src, mask, None, target, 10, temperature=0.0)
    assert (plain[0, 1:, 0] == favourite).all()
    penalised = model.generate(src, mask, None, target, 10, temperature=0.0, repetition_penalty=1e9)
    assert int((penalised[0, 1:, 0] == favourite).sum()) == 1
    # An explicit chain replaces the settings: an empty one samples at temperature 1.
    generator = torch.Generator().manual_seed(0)
    sampled = model.generate(src, mask, None, target, 10, filters=[], generator=generator)
    assert sampled.shape[1] == 10
