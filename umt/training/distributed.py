"""Small helpers for state that differs between DDP ranks (data positions, RNG states)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def process_group_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when none is initialised)."""

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_from_ranks(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), indexed by rank; ``[value]`` without a process group.

    A collective: every rank must call it at the same point (Lightning writes checkpoints on all
    ranks, only rank 0 stores the file).
    """

    world = process_group_size()
    if world == 1:
        return [value]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered
