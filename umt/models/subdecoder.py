"""The codebook sub-decoder: a small causal Transformer over the ``K`` codebook slots of one step.

After UniAudio's local (codebook-level) Transformer: the main decoder emits one hidden state
``h`` per time step; the sub-decoder reads the slots ``[h, h + E(c_0), ..., h + E(c_{K-2})]``
(``E`` the token embedding of the step's ids) and its output at slot ``k`` predicts codebook
``k``. Training uses teacher forcing (the true ``c``); generation fills the slots one by one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from umt.models.transformer import EncoderLayer, KVCache


class CodebookSubDecoder(nn.Module):
    """``layers`` causal pre-LN blocks over ``K`` slots plus a learned slot embedding."""

    def __init__(
        self,
        num_codebooks: int,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        layers: int,
        dropout: float,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_codebooks = num_codebooks
        self.n_heads = n_heads
        self.head_dim = head_dim or d_model // n_heads
        self.slot = nn.Embedding(num_codebooks, d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, ff_dim, dropout, head_dim=head_dim) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, hidden: Tensor, previous: Tensor) -> Tensor:
        """Teacher-forced pass.

        ``hidden [N, d]`` main-decoder states, ``previous [N, K-1, d]`` embeddings of codebooks
        ``0..K-2`` of the same step -> slot outputs ``[N, K, d]``.
        """
        slots = torch.cat([hidden[:, None], hidden[:, None] + previous], dim=1)
        x = slots + self.slot.weight[: slots.shape[1]]
        for layer in self.layers:
            x = layer(x, is_causal=True)
        return self.norm(x)

    def new_caches(self, batch: int, like: Tensor) -> list[KVCache]:
        return [
            KVCache.empty(batch, self.n_heads, self.num_codebooks, self.head_dim, like) for _ in self.layers
        ]

    def step(self, slot_input: Tensor, slot: int, caches: list[KVCache]) -> Tensor:
        """Cached generation step: ``slot_input [N, d]`` for slot ``slot`` -> its output ``[N, d]``.

        Slot ``k`` attends over the keys and values of slots ``0..k`` cached in ``caches`` (one
        :class:`KVCache` of ``K`` positions per layer), so each slot is computed once per step.
        """
        x = slot_input + self.slot.weight[slot]
        if self.training:  # dropout: the module path
            x = x[:, None]
            for layer, cache in zip(self.layers, caches):
                x = layer(x, is_causal=True, cache=cache, position=slot)
            return self.norm(x[:, 0])
        for layer, cache in zip(self.layers, caches):
            x = layer.step(x, cache, slot)
        return self.norm(x)
