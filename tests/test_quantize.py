"""Quantized decoding (``--dtype``, :mod:`umt.models.quantize`): int8 linears compute what the fp32
ones do within int8's rounding, quantized models generate through every path, the CLI takes the
option, and int8 is refused where it cannot run. Its quality bound on a trained model is asserted
in ``tests/test_demo.py`` (the quick demo's model)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_translate_cli import check_musicxml, check_wav, translate, workspace  # noqa: F401
from test_translator import PAPER_MODALITIES, VOCAB, generation_inputs, make_model

from umt.cli import DTYPE_CHOICES
from umt.models.quantize import DTYPES, Int8Linear, for_decoding
from umt.vocab import PAD_ID


def test_the_cli_offers_the_dtypes_the_model_code_knows():
    assert DTYPE_CHOICES == DTYPES


@pytest.mark.parametrize("shape", [(64, 48), (512, 256)])
def test_int8_linear_is_the_fp32_linear_within_int8_rounding(shape):
    torch.manual_seed(0)
    linear = torch.nn.Linear(*shape)
    quantized = Int8Linear(linear)
    x = torch.randn(3, 5, shape[0])
    expected = linear(x)
    got = quantized(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    relative = (got - expected).norm() / expected.norm()
    assert relative < 0.02, relative
    # not the fp32 result by accident: int8 rounding is there
    assert not torch.equal(got, expected)


def test_int8_replaces_every_linear_but_the_head():
    model = for_decoding(make_model(seed=1), "int8")
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears == ["head"]
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) > 10
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
@pytest.mark.parametrize("target", PAPER_MODALITIES)
def test_quantized_models_generate_allowed_ids_cached_as_uncached(dtype, target):
    model = make_model(seed=2).eval()
    quantized = for_decoding(copy.deepcopy(model), dtype)
    src, src_mask = generation_inputs([5, 3, 4])
    tgt = torch.full((3,), PAPER_MODALITIES.index(target))
    outputs = [
        quantized.generate(src, src_mask, None, tgt, 12, temperature=0.0, use_cache=use_cache)
        for use_cache in (True, False)
    ]
    assert torch.equal(outputs[0], outputs[1])
    allowed = torch.from_numpy(VOCAB.allowed_mask(target))  # [K, V]
    for example in outputs[0]:
        for row in example[1:]:
            if (row == PAD_ID).all():  # after EOS
                break
            assert all(allowed[k, row[k]] for k in range(VOCAB.num_codebooks)), row
    sampled = quantized.generate(
        src, src_mask, None, tgt, 12, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(1)
    )
    assert sampled.shape[0] == 3


def test_int8_is_refused_off_the_cpu_and_unknown_dtypes_are_refused():
    with pytest.raises(ValueError, match="CPU only"):
        for_decoding(make_model().to("meta"), "int8")
    with pytest.raises(ValueError, match="unknown dtype"):
        for_decoding(make_model(), "fp16")


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_translate_takes_dtype(workspace, tmp_path, dtype):  # noqa: F811
    assert translate(workspace, "omr", ["system"], tmp_path / "omr", "--dtype", dtype) == 0
    check_musicxml(tmp_path / "omr" / "system.musicxml")
    assert translate(workspace, "m2a", ["midi"], tmp_path / "m2a", "--dtype", dtype) == 0
    check_wav(tmp_path / "m2a" / "tune.wav")
