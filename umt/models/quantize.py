"""Lower-precision weights for decoding: int8 (dynamic) or bf16, chosen by ``--dtype``.

Cached decoding reads every decoder weight once per step and does little arithmetic per byte, so on
a CPU it runs at the speed memory streams weights. Fewer bytes a weight is the lever:

* ``int8``: every ``nn.Linear`` except the output head becomes :class:`Int8Linear`, whose weight
  is int8 with one scale per output row; each call quantizes its input (per tensor, to 8 bits)
  and runs an int8 matrix product (fbgemm/oneDNN, VNNI where the CPU has it). 4x fewer bytes than
  fp32; on one thread of this project's development CPU a paper-size linear at batch 1-8 takes a
  third of the fp32 time. CPU only. The head stays fp32: decoding slices its rows per codebook
  (:meth:`umt.models.translator.Translator._slot_head`), and it is a small part of a step.
* ``bf16``: the whole model in bfloat16 (norms and softmax included; logits are compared in
  float32). Half the bytes; fast where the CPU has AMX/AVX512-BF16 and on CUDA, and mostly for
  batched decoding and the encoder: bf16 matrix-vector products are not faster than fp32 ones on
  the CPUs measured.

Both are for inference only (no gradients), applied after loading: the checkpoint stays fp32.
What they cost in quality is measured, not assumed (``python -m umt.bench quantized``).
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

DTYPES = ("fp32", "bf16", "int8")
"""``--dtype`` choices; fp32 is the default (the weights as trained)."""


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (symmetric, one scale per output row) and inputs quantized
    per call. ``x [..., in] -> [..., out]`` in float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float().cpu()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated after torch 2.13 (pinned)
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch.quantize_per_channel(weight, scales, zero_points, axis=0, dtype=torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        out = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, shape[-1]).float(), self._packed, _reduce_range()
        )
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


@functools.cache
def _reduce_range() -> bool:
    """Whether inputs are quantized to 7 bits instead of 8: without VNNI, x86 int8 products add
    pairs into int16, which 8-bit inputs can saturate. With VNNI (read from ``/proc/cpuinfo``) they
    get all 8 bits: on the default demo's model, OMR's greedy tokens were 97 % those of fp32 with
    8 bits and 74 % with 7."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    return not re.search(r"\b(avx512_vnni|avx_vnni)\b", flags)


def for_decoding(model: nn.Module, dtype: str, keep: tuple[str, ...] = ("head",)) -> nn.Module:
    """``model`` in eval mode with its weights in ``dtype`` (:data:`DTYPES`), for inference, on the
    device it is on. ``keep``: names of linear layers left as they are under int8. Changes
    ``model`` in place and returns it."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    model.eval().requires_grad_(False)
    if dtype == "bf16":
        return model.to(torch.bfloat16)
    if dtype == "int8":
        device = next(model.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"int8 decoding runs on the CPU only, not {device} (use --dtype bf16 there)")
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear) and name not in keep:
                parent, _, attribute = name.rpartition(".")
                setattr(model.get_submodule(parent), attribute, Int8Linear(module))
    return model
