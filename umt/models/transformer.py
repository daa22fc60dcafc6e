"""Pre-LayerNorm Transformer blocks with fused projections, SDPA and preallocated KV caches.

Pure PyTorch. Shapes: ``B`` batch, ``T`` query length, ``S`` key (memory) length, ``d`` model
width, ``H`` heads, ``dh`` head width (``d / H`` unless given: x-transformers, the library of
U-MusT's code, uses 64 whatever ``d`` and ``H``, so its attention is ``H * 64`` wide).

Masks follow :func:`torch.nn.functional.scaled_dot_product_attention`: boolean, ``True`` = may
attend, broadcastable to ``[B, H, T, S]`` (we pass key-padding masks as ``[B, 1, 1, S]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class KVCache:
    """Preallocated self-attention keys and values ``[B, H, max_len, dh]`` of one layer.

    Decoding writes step ``t`` into slot ``t`` and attends over ``[:t + 1]``: no concatenation and
    no re-allocation per step.
    """

    keys: Tensor
    values: Tensor

    @classmethod
    def empty(cls, batch: int, heads: int, max_len: int, head_dim: int, like: Tensor) -> KVCache:
        shape = (batch, heads, max_len, head_dim)
        return cls(like.new_empty(shape), like.new_empty(shape))


def _head_dim(d_model: int, n_heads: int, head_dim: int | None) -> int:
    if head_dim is not None:
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1, got {head_dim}")
        return head_dim
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    return d_model // n_heads


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, head_dim: int | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = _head_dim(d_model, n_heads, head_dim)
        self.dropout = dropout
        inner = n_heads * self.head_dim
        self.qkv = nn.Linear(d_model, 3 * inner)
        self.out = nn.Linear(inner, d_model)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        position: int = 0,
    ) -> Tensor:
        """``x [B, T, d] -> [B, T, d]``.

        With ``cache``, ``x`` holds positions ``position .. position + T - 1``; their keys and
        values are stored in the cache and the queries attend over everything cached so far
        (``T`` must be 1 unless ``position`` is 0, where ``is_causal`` then applies).
        """
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        if cache is not None:
            end = position + length
            cache.keys[:, :, position:end] = key
            cache.values[:, :, position:end] = value
            key, value = cache.keys[:, :, :end], cache.values[:, :, :end]
            if position > 0:
                if length != 1:
                    raise ValueError("cached self-attention takes one position at a time after the first")
                is_causal = False
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))

    def step(self, x: Tensor, cache: KVCache, position: int) -> Tensor:
        """One cached decoding position: ``x [B, d]`` at ``position`` -> ``[B, d]``.

        The values of :meth:`forward` with ``cache``, ``T = 1`` and no dropout, in fewer ops: the
        decoding hot path, where per-op overhead outweighs the arithmetic at small sizes.
        """
        batch = x.shape[0]
        query, key, value = self.qkv(x).view(batch, 3, self.n_heads, self.head_dim).unbind(1)  # [B, H, dh]
        cache.keys[:, :, position] = key
        cache.values[:, :, position] = value
        end = position + 1
        attended = F.scaled_dot_product_attention(
            query[:, :, None], cache.keys[:, :, :end], cache.values[:, :, :end]
        )  # [B, H, 1, dh]
        return self.out(attended.reshape(batch, -1))


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder to the encoder memory (fused KV projection).

    :meth:`project_memory` computes the memory keys and values once; decoding reuses them every step.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, head_dim: int | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = _head_dim(d_model, n_heads, head_dim)
        self.dropout = dropout
        inner = n_heads * self.head_dim
        self.query = nn.Linear(d_model, inner)
        self.kv = nn.Linear(d_model, 2 * inner)
        self.out = nn.Linear(inner, d_model)

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """``memory [B, S, d]`` -> keys, values ``[B, H, S, dh]``."""
        batch, length, _ = memory.shape
        kv = self.kv(memory).view(batch, length, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], memory_mask: Tensor | None) -> Tensor:
        """``x [B, T, d]``, memory keys/values ``[B, H, S, dh]``, mask ``[B, 1, 1, S]`` -> ``[B, T, d]``."""
        batch, length, _ = x.shape
        query = self.query(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(
            query,
            memory_kv[0],
            memory_kv[1],
            attn_mask=memory_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))

    def step(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], memory_mask: Tensor | None) -> Tensor:
        """One decoding position ``x [B, d]`` -> ``[B, d]`` (:meth:`forward`'s values, no dropout)."""
        batch = x.shape[0]
        query = self.query(x).view(batch, self.n_heads, 1, self.head_dim)
        attended = F.scaled_dot_product_attention(query, memory_kv[0], memory_kv[1], attn_mask=memory_mask)
        return self.out(attended.reshape(batch, -1))


class FeedForward(nn.Module):
    """``Linear -> GELU -> dropout -> Linear``."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, ff_dim)
        self.down = nn.Linear(ff_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.dropout(F.gelu(self.up(x))))

    def step(self, x: Tensor) -> Tensor:
        """:meth:`forward` without dropout (decoding)."""
        return self.down(F.gelu(self.up(x)))


class EncoderLayer(nn.Module):
    """Pre-LN block: ``x + SelfAttn(LN(x))``, then ``x + FF(LN(x))``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float | None = None,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, attention_dropout, head_dim)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        position: int = 0,
    ) -> Tensor:
        """``x [B, T, d] -> [B, T, d]`` (``is_causal``/``cache`` make it a decoder-only block)."""
        x = x + self.dropout(self.attn(self.attn_norm(x), attn_mask, is_causal, cache, position))
        return x + self.dropout(self.ff(self.ff_norm(x)))

    def step(self, x: Tensor, cache: KVCache, position: int) -> Tensor:
        """Causal cached decoding of one position ``x [B, d]`` -> ``[B, d]``, in eval mode.

        The values of ``forward(x[:, None], is_causal=True, cache=cache, position=position)[:, 0]``
        without its dropout calls and reshapes.
        """
        x = x + self.attn.step(self.attn_norm(x), cache, position)
        return x + self.ff.step(self.ff_norm(x))


class DecoderLayer(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the memory, feed-forward."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float | None = None,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.self_norm = nn.LayerNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, attention_dropout, head_dim)
        self.cross_norm = nn.LayerNorm(d_model)
        self.cross_attn = CrossAttention(d_model, n_heads, attention_dropout, head_dim)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | tuple[Tensor, Tensor],
        memory_mask: Tensor | None,
        cache: KVCache | None = None,
        position: int = 0,
    ) -> Tensor:
        """``x [B, T, d]`` (positions ``position..``) -> ``[B, T, d]``; causal over the target.

        ``memory``: the encoder output ``[B, S, d]``, projected here (training: every weight of the
        block is used inside its ``forward``, as FSDP's per-block gathering needs), or its keys
        and values from :meth:`CrossAttention.project_memory` (decoding computes them once).
        """
        memory_kv = memory if isinstance(memory, tuple) else self.cross_attn.project_memory(memory)
        x = x + self.dropout(
            self.self_attn(self.self_norm(x), is_causal=True, cache=cache, position=position)
        )
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), memory_kv, memory_mask))
        return x + self.dropout(self.ff(self.ff_norm(x)))

    def step(
        self,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor | None,
        cache: KVCache,
        position: int,
    ) -> Tensor:
        """Cached decoding of one position ``x [B, d]`` -> ``[B, d]``, in eval mode.

        The values of ``forward(x[:, None], memory_kv, memory_mask, cache, position)[:, 0]`` without
        its dropout calls and reshapes.
        """
        x = x + self.self_attn.step(self.self_norm(x), cache, position)
        x = x + self.cross_attn.step(self.cross_norm(x), memory_kv, memory_mask)
        return x + self.ff.step(self.ff_norm(x))
