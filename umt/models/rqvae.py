"""RQ-VAE: a convolutional autoencoder with a residual-quantization bottleneck (pure PyTorch).

The score-image tokenizer of U-MusT. A ResNet encoder downsamples a grayscale image by
``2 ** (len(ch_mult) - 1)`` (16 with the paper's ``ch_mult = (1, 1, 2, 2, 4)``), a 1x1 conv maps to
the latent dimension, and ``num_codebooks`` codebooks quantize each latent vector residually:
codebook ``k`` quantizes what codebooks ``0..k-1`` left over. Codebooks are updated by exponential
moving averages (not by gradients) and unused codes are restarted from random batch vectors.

Module and buffer names follow kakaobrain/rq-vae-transformer (``encoder.down.0.block.0.conv1``,
``quantizer.codebooks.0.embed_ema``, ...), so its checkpoints load with ``strict=True``; the layer
semantics (asymmetric-padding downsampling, nearest upsampling, GroupNorm(32), swish, the mid-block
attention the reference always has) are the same, so the same weights give the same codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class RQVAEConfig:
    """Sizes of an RQ-VAE (defaults: the paper's score-image tokenizer)."""

    in_channels: int = 1
    out_channels: int = 1
    ch: int = 128
    """Base channel count; every level's channels are a multiple of 32 (GroupNorm groups)."""
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    """Feature-map sizes that get attention blocks in the down/up levels (none in the paper)."""
    mid_attention: bool = True
    """The reference always has one attention block in the encoder's and decoder's middle; keep it to
    load its checkpoints."""
    resolution: int = 256
    """Nominal input size: only used to decide where ``attn_resolutions`` apply."""
    dropout: float = 0.0
    z_channels: int = 256
    embed_dim: int = 256
    """Latent (codebook vector) dimension."""
    n_embed: int = 1024
    """Codes per codebook."""
    num_codebooks: int = 4
    shared_codebook: bool = False
    decay: float = 0.99
    restart_unused_codes: bool = True
    latent_loss_weight: float = 0.25
    """Weight of the commitment loss."""
    loss_type: str = "mse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        for mult in self.ch_mult:
            if (self.ch * mult) % 32:
                raise ValueError(f"ch * ch_mult must be multiples of 32 (GroupNorm), got {self.ch} * {mult}")
        if self.loss_type not in ("mse", "l1"):
            raise ValueError(f"loss_type must be 'mse' or 'l1', got {self.loss_type!r}")
        if self.num_codebooks < 1 or self.n_embed < 1:
            raise ValueError("num_codebooks and n_embed must be >= 1")

    @property
    def downsampling(self) -> int:
        """Pixels per latent cell along each axis (16 in the paper)."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["ch_mult"] = list(self.ch_mult)
        values["attn_resolutions"] = list(self.attn_resolutions)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> RQVAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown RQ-VAE config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def tiny_rqvae_config(**overrides) -> RQVAEConfig:
    """A few-thousand-parameter RQ-VAE with the paper's 16x downsampling, for tests."""
    values = dict(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, z_channels=16, embed_dim=16, n_embed=32)
    values.update(overrides)
    return RQVAEConfig(**values)


# ---------------------------------------------------------------------------------------- layers
def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def _swish(x: torch.Tensor) -> torch.Tensor:
    # In place, as the reference does: every call site passes a fresh GroupNorm output that nothing
    # else reads (GroupNorm's backward needs its input, not its output), and on CPU the copy an
    # out-of-place SiLU makes costs about a tenth of the encoder's time.
    return F.silu(x, inplace=True)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv twice, plus a (1x1-projected) skip. ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map. ``[B, C, H, W] -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        q = self.q(normed).reshape(b, c, h * w).transpose(1, 2)  # [B, HW, C]
        k = self.k(normed).reshape(b, c, h * w)  # [B, C, HW]
        v = self.v(normed).reshape(b, c, h * w)  # [B, C, HW]
        weights = torch.softmax(torch.bmm(q, k) * (c**-0.5), dim=2)  # [B, HW_q, HW_k]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 conv after padding one pixel on the right and bottom. ``[B, C, H, W] -> [B, C, H/2, W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling then a conv. ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (maybe empty), ``downsample``/``upsample``."""


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        if attention:
            self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)
        if self.attention:
            x = self.attn_1(x)
        return self.block_2(x)


class Encoder(nn.Module):
    """Image ``[B, in_channels, H, W]`` -> features ``[B, z_channels, H/f, W/f]`` (f = downsampling)."""

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        ch, mults = config.ch, config.ch_mult
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        resolution = config.resolution
        block_in = ch
        for level, mult in enumerate(mults):
            stage = _Level()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            block_out = ch * mult
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(mults) - 1:
                stage.downsample = Downsample(block_in)
                resolution //= 2
            self.down.append(stage)
        self.mid = _Middle(block_in, config.dropout, config.mid_attention)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for level, stage in enumerate(self.down):
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if level != last:
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Features ``[B, z_channels, h, w]`` -> image ``[B, out_channels, h*f, w*f]``."""

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        ch, mults = config.ch, config.ch_mult
        block_in = ch * mults[-1]
        resolution = config.resolution // config.downsampling
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = _Middle(block_in, config.dropout, config.mid_attention)
        levels: list[_Level] = []
        for level in reversed(range(len(mults))):
            stage = _Level()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            block_out = ch * mults[level]
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in)
                resolution *= 2
            levels.insert(0, stage)  # index = level, as in the reference's key names
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if level != 0:
                h = stage.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


# ------------------------------------------------------------------------------------ quantizer
class VQEmbedding(nn.Embedding):
    """One codebook of ``n_embed`` vectors (plus an unused padding row, as in the reference).

    Buffers ``cluster_size_ema [n_embed]`` and ``embed_ema [n_embed, D]`` hold the EMA statistics;
    the weight is ``embed_ema / normalized cluster size`` after every training step.
    """

    def __init__(
        self, n_embed: int, embed_dim: int, decay: float = 0.99, restart_unused_codes: bool = True
    ) -> None:
        super().__init__(n_embed + 1, embed_dim, padding_idx=n_embed)
        self.n_embed, self.decay, self.eps = n_embed, decay, 1e-5
        self.restart_unused_codes = restart_unused_codes
        self.weight.requires_grad_(False)
        self.register_buffer("cluster_size_ema", torch.zeros(n_embed))
        self.register_buffer("embed_ema", self.weight[:-1].detach().clone())

    @property
    def codebook(self) -> torch.Tensor:
        """``[n_embed, D]`` (without the padding row)."""
        return self.weight[:-1]

    @torch.no_grad()
    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """Indices ``[...]`` of the nearest code (squared L2) for vectors ``[..., D]``."""
        flat = vectors.reshape(-1, vectors.shape[-1])
        codebook_t = self.codebook.t()
        # ||x||^2 + ||c||^2 - 2 x.c, evaluated as the reference does so that ties break alike.
        distances = torch.addmm(
            flat.pow(2.0).sum(dim=1, keepdim=True) + codebook_t.pow(2.0).sum(dim=0, keepdim=True),
            flat,
            codebook_t,
            alpha=-2.0,
        )
        return distances.argmin(dim=-1).reshape(vectors.shape[:-1])

    @torch.no_grad()
    def update_statistics(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA update from a batch (vectors ``[..., D]``, their codes ``[...]``), then restart dead codes.

        The weight itself changes in :meth:`update_weight`, after the batch was embedded with the old one.
        """
        dim = vectors.shape[-1]
        vectors = vectors.reshape(-1, dim)
        indices = indices.reshape(-1)
        one_hot = vectors.new_zeros(self.n_embed, vectors.shape[0])
        one_hot.scatter_(0, indices.unsqueeze(0), 1.0)
        cluster_size = one_hot.sum(dim=1)
        vector_sums = one_hot @ vectors
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(vector_sums)
            dist.all_reduce(cluster_size)
        self.cluster_size_ema.mul_(self.decay).add_(cluster_size, alpha=1 - self.decay)
        self.embed_ema.mul_(self.decay).add_(vector_sums, alpha=1 - self.decay)
        if self.restart_unused_codes:
            if vectors.shape[0] < self.n_embed:  # too few vectors: repeat them with a little noise
                repeats = -(-self.n_embed // vectors.shape[0])
                vectors = vectors.repeat(repeats, 1)
                vectors = vectors + torch.rand_like(vectors) * (0.01 / dim**0.5)
            candidates = vectors[torch.randperm(vectors.shape[0], device=vectors.device)][: self.n_embed]
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(candidates, 0)
            used = (self.cluster_size_ema >= 1).to(vectors.dtype).unsqueeze(1)  # [n_embed, 1]
            self.embed_ema.mul_(used).add_(candidates * (1 - used))
            self.cluster_size_ema.mul_(used.squeeze(1)).add_(1 - used.squeeze(1))

    @torch.no_grad()
    def update_weight(self) -> None:
        """Codebook = EMA sums / (Laplace-smoothed) EMA cluster sizes."""
        total = self.cluster_size_ema.sum()
        normalized = total * (self.cluster_size_ema + self.eps) / (total + self.n_embed * self.eps)
        self.weight[:-1] = self.embed_ema / normalized.unsqueeze(1)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``[...]`` -> vectors ``[..., D]``."""
        return super().forward(indices)


class RQBottleneck(nn.Module):
    """Residual quantization of latents ``[B, h, w, D]`` with ``num_codebooks`` codebooks."""

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        make = lambda: VQEmbedding(  # noqa: E731
            config.n_embed, config.embed_dim, config.decay, config.restart_unused_codes
        )
        if config.shared_codebook:
            shared = make()
            self.codebooks = nn.ModuleList([shared] * config.num_codebooks)
        else:
            self.codebooks = nn.ModuleList([make() for _ in range(config.num_codebooks)])

    def quantize(self, latents: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Latents ``[B, h, w, D]`` -> (running sums of quantizations, codes ``[B, h, w, K]``).

        In training mode each codebook is EMA-updated on the residuals it quantized.
        """
        residual = latents.detach().clone()
        aggregated = torch.zeros_like(latents)
        cumulative, codes = [], []
        for codebook in self.codebooks:
            code = codebook.nearest(residual)
            if self.training:
                codebook.update_statistics(residual, code)
            quant = codebook.embed(code)
            if self.training:
                codebook.update_weight()
            residual.sub_(quant)
            aggregated.add_(quant)
            cumulative.append(aggregated.clone())
            codes.append(code)
        return cumulative, torch.stack(codes, dim=-1)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents ``[B, h, w, D]`` -> (straight-through quantized ``[B, h, w, D]``, commitment, codes)."""
        cumulative, codes = self.quantize(latents)
        commitment = torch.stack([(latents - q.detach()).pow(2.0).mean() for q in cumulative]).mean()
        quantized = latents + (cumulative[-1] - latents).detach()
        return quantized, commitment, codes

    @torch.no_grad()
    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h, w, K]`` -> summed code vectors ``[B, h, w, D]``."""
        return sum(codebook.embed(codes[..., k]) for k, codebook in enumerate(self.codebooks))

    @torch.no_grad()
    def usage(self) -> torch.Tensor:
        """Fraction of each codebook's codes whose EMA cluster size is >= 1: ``[K]``."""
        return torch.stack([(cb.cluster_size_ema >= 1).float().mean() for cb in self.codebooks])


class RQVAE(nn.Module):
    """Image ``[B, C, H, W]`` (H, W multiples of the downsampling) <-> codes ``[B, H/f, W/f, K]``."""

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = RQBottleneck(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> continuous latents ``[B, H/f, W/f, D]``."""
        return self.quant_conv(self.encoder(images)).permute(0, 2, 3, 1).contiguous()

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, h, w, D]`` -> images ``[B, C, h*f, w*f]``."""
        return self.decoder(self.post_quant_conv(quantized.permute(0, 3, 1, 2).contiguous()))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images -> (reconstructions ``[B, C, H, W]``, commitment loss, codes ``[B, h, w, K]``)."""
        quantized, commitment, codes = self.quantizer(self.encode(images))
        return self.decode(quantized), commitment, codes

    def compute_loss(
        self,
        reconstructions: torch.Tensor,
        commitment: torch.Tensor,
        images: torch.Tensor,
        pixel_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Reconstruction (MSE or L1) + ``latent_loss_weight`` * commitment.

        ``pixel_weights`` (``[B, C, H, W]`` like ``images``, or None for equal weights) make the
        reconstruction a weighted mean over pixels.
        """
        error = reconstructions - images
        error = error.square() if self.config.loss_type == "mse" else error.abs()
        if pixel_weights is None:
            recon = error.mean()
        else:
            recon = (error * pixel_weights).sum() / pixel_weights.sum()
        total = recon + self.config.latent_loss_weight * commitment
        return {"loss": total, "recon": recon, "commitment": commitment}

    @torch.no_grad()
    def get_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> codes ``[B, H/f, W/f, K]`` (int64)."""
        _, codes = self.quantizer.quantize(self.encode(images))
        return codes

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h, w, K]`` -> images ``[B, C, h*f, w*f]``."""
        return self.decode(self.quantizer.embed_codes(codes))


def check_codes(codes: torch.Tensor, config: RQVAEConfig) -> None:
    """Raise ValueError unless ``codes`` is ``[B, h, w, K]`` with values in ``0..n_embed-1``."""
    if codes.ndim != 4 or codes.shape[-1] != config.num_codebooks:
        raise ValueError(f"codes must be [B, h, w, {config.num_codebooks}], got {tuple(codes.shape)}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= config.n_embed):
        raise ValueError(f"codes must be in 0..{config.n_embed - 1}")


def as_int_tuple(values: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))
