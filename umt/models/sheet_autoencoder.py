"""The convolutional autoencoder of "Visual features of sheet music with autoencoders" (ICCCM 2025).

Grayscale patches ``[B, 1, S, S]`` (448 px in the paper) in [0, 1]. The encoder halves the size
three times, 448 -> 224 -> 112 -> 56, with 16 filters of 5 x 5, then 32 and 64 of 3 x 3, each
followed by batch norm, ReLU and dropout 0.25; the bottleneck ``[B, 64, S/8, S/8]`` is decoded back
by three transposed convolutions (a sigmoid at the end) and trained with MSE. A classification head
(global average pool of the bottleneck, one linear layer) predicts a style, period or composer;
:meth:`SheetAutoencoder.features` gives the pooled bottleneck that the style probe reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class SheetAutoencoderConfig:
    channels: tuple[int, int, int] = (16, 32, 64)
    kernels: tuple[int, int, int] = (5, 3, 3)
    dropout: float = 0.25
    classes: int = 0
    """Size of the classification head (0: none)."""


def _down(channels_in: int, channels_out: int, kernel: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, stride=2, padding=kernel // 2),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(),
        nn.Dropout(dropout),
    )


def _up(channels_in: int, channels_out: int, last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1)]
    layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(channels_out), nn.ReLU()]
    return nn.Sequential(*layers)


class SheetAutoencoder(nn.Module):
    """``x [B, 1, S, S]`` (S divisible by 8) -> reconstruction ``[B, 1, S, S]`` and, with a head,
    logits ``[B, classes]``."""

    def __init__(self, config: SheetAutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SheetAutoencoderConfig()
        widths = (1, *config.channels)
        self.encoder = nn.Sequential(
            *(_down(widths[i], widths[i + 1], config.kernels[i], config.dropout) for i in range(3))
        )
        self.decoder = nn.Sequential(
            *(_up(widths[i + 1], widths[i], last=i == 0) for i in reversed(range(3)))
        )
        self.head = nn.Linear(config.channels[-1], config.classes) if config.classes else None

    def encode(self, x: Tensor) -> Tensor:
        """The bottleneck ``[B, C, S/8, S/8]``."""
        return self.encoder(x)

    def features(self, x: Tensor) -> Tensor:
        """The bottleneck pooled over space ``[B, C]`` (what the head and the style probe read)."""
        return self.encode(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        code = self.encode(x)
        logits = self.head(code.mean(dim=(2, 3))) if self.head is not None else None
        return self.decoder(code), logits
