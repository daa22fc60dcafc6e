"""Optimiser helpers shared by the trainers and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def fused_adamw_supported(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether ``torch.optim.AdamW(fused=True)`` steps on every (device, dtype) of ``parameters``.

    AdamW checks the parameters only at its first step, so one element of each (device, dtype)
    is stepped as a probe (fused kernels exist for float CPU and CUDA tensors in torch 2.13).
    """
    for device, dtype in {(p.device, p.dtype) for p in parameters}:
        try:
            probe = torch.nn.Parameter(torch.zeros(1, device=device, dtype=dtype))
            probe.grad = torch.zeros_like(probe)
            torch.optim.AdamW([probe], lr=1e-4, fused=True).step()
        except (RuntimeError, NotImplementedError):
            return False
    return True
