"""The Lightning module that trains a :class:`~umt.models.translator.Translator` on a task mixture.

It builds the model from plain config dicts (saved with ``save_hyperparameters``), so loading a
checkpoint rebuilds the same model without Hydra. Optimisation follows the paper: AdamW at 1e-4,
2000 linear warm-up steps, cosine decay to 1e-5 (gradient clipping and accumulation are
trainer settings). The curriculum step is the global step. Logged: loss and accuracy overall, per
codebook and per task, and the learning rate.

The global torch RNG state (dropout) of every rank, and its CUDA RNG state on a GPU, are saved
in the checkpoint and restored on resume, so a resumed CPU run continues bit for bit like an
uninterrupted one. The checkpoint also
records the vocabulary hash and the fingerprints of the tokenizers that baked the training shards
(``umt_tokenizer_hashes``, by modality); ``umt export`` refuses other tokenizers.

Image and audio token embeddings can start from the tokenizers' codebooks
(:func:`tokenizer_codebook_vectors`, :meth:`TranslationModule.init_codebook_embeddings`).

AdamW is the fused kernel where torch has one for the parameters (CPU and CUDA, float32/bf16;
``optim.fused``), several times faster than the per-parameter loop. Gradient clipping by norm is
done here rather than by Lightning's precision plugins, which refuse fused optimisers under mixed
precision and refuse clipping by norm under FSDP: FSDP's own ``clip_grad_norm_`` is used there (a
norm over every rank's shards), ``torch.nn.utils.clip_grad_norm_`` otherwise, and Lightning's path
only with a gradient scaler (fp16), where the gradients must be unscaled first. Weight decay goes
to the parameters that were matrices when the model was built, so it stays right under FSDP, whose
``use_orig_params`` exposes them as flat shards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
from torch.distributed.fsdp import FullyShardedDataParallel

from umt.errors import CheckpointError, UserError
from umt.modalities.windows import WINDOW_SECONDS
from umt.models.translator import Translator, TranslatorConfig
from umt.tokenizers.folders import fit_problem
from umt.training.config import OptimNode
from umt.training.distributed import gather_from_ranks
from umt.vocab import Vocabulary, vocabulary_from_dict


def build_translator(model: Mapping[str, Any], vocab: Vocabulary):
    """A Translator from a plain mapping of TranslatorConfig fields."""

    return Translator(TranslatorConfig(**dict(model)), vocab)


def warmup_cosine(step: int, warmup: int, decay: int, lr: float, min_lr: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, decay))
    floor = min_lr / lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def tokenizer_codebook_vectors(tokenizer: Any, vocab: Vocabulary) -> list[torch.Tensor]:
    """The code vectors of an image or audio tokenizer: one ``[codebook_size, dim]`` per codebook
    the vocabulary uses for its modality (float32, CPU).

    Image (RQ-VAE): the codebooks' vectors (``dim`` = the latent width). Audio (DAC): each code's
    contribution to the latent, i.e. the codebook's out-projection of its code vector (``dim`` =
    the codec's latent width); a codec with fewer codes than the vocabulary's codebook range gets
    rows of the mean vector for the codes it never makes. Raises :class:`~umt.errors.UserError`
    when the tokenizer does not fit ``vocab``.
    """

    problem = fit_problem(tokenizer, vocab)
    if problem is not None:
        raise UserError(problem)
    modality = tokenizer.modality
    count = vocab.modality_codebooks(modality)
    if modality == "image":
        codebooks = tokenizer.model.quantizer.codebooks
        return [codebooks[k].codebook.detach().float().cpu().clone() for k in range(count)]
    quantizers = tokenizer.codec.quantizer.quantizers
    out = []
    for k in range(count):
        quantizer = quantizers[k]
        codes = torch.arange(quantizer.codebook_size, device=quantizer.codebook.weight.device)
        vectors = quantizer.out_proj(quantizer.decode_code(codes[None]))[0].t().float().cpu()  # [n, D]
        room = vocab.codebook_range(modality, k).size
        if vectors.shape[0] < room:
            filler = vectors.mean(0, keepdim=True).expand(room - vectors.shape[0], -1)
            vectors = torch.cat([vectors, filler])
        out.append(vectors)
    return out


class TranslationModule(pl.LightningModule):
    """Trains one Translator; ``model``, ``vocab``, ``optim`` and ``tasks`` are plain dicts/lists."""

    def __init__(
        self,
        model: Mapping[str, Any],
        vocab: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
        tasks: list[str] | None = None,
        max_steps: int = 0,
        task_metrics_every_n_steps: int | None = None,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        """``window_seconds``: the audio/MIDI window of the training data, kept in the checkpoint
        so that the exported model translates in windows of the same length."""
        super().__init__()
        self.save_hyperparameters()
        self.vocab = vocabulary_from_dict(vocab)
        self.translator = build_translator(model, self.vocab)
        # The defaults are OptimNode's, the typed config node Hydra validates (one source); an
        # unknown key fails here too.
        self.optim_config = asdict(OptimNode(**dict(optim or {})))
        # Names of the matrix parameters (weight decay), taken before any FSDP flattening.
        self._decay_names = self._matrix_parameter_names()
        self.tasks = list(tasks or [])
        self.max_steps = max_steps
        self.task_metrics_every_n_steps = task_metrics_every_n_steps

    def init_codebook_embeddings(self, codebooks: Mapping[str, Sequence[torch.Tensor]]) -> None:
        """Initialise the embeddings of each modality in ``codebooks`` from its code vectors.

        ``codebooks``: modality -> one ``[codebook_size, dim]`` tensor per codebook (see
        :func:`tokenizer_codebook_vectors`). The model config (``model`` hyper-parameter) must
        already have ``<modality>_code_dim = dim``, so a checkpoint rebuilds the same model.
        """
        for modality in sorted(codebooks):
            vectors = list(codebooks[modality])
            key = f"{modality}_code_dim"
            wanted = int(self.hparams["model"].get(key) or 0)
            if vectors and wanted != vectors[0].shape[-1]:
                raise ValueError(
                    f"model {key} is {wanted}, the {modality} code vectors have {vectors[0].shape[-1]} dims"
                )
            self.translator.init_codebook_embeddings(modality, vectors)
        self._decay_names = self._matrix_parameter_names()

    def _matrix_parameter_names(self) -> set[str]:
        return {name for name, p in self.translator.named_parameters() if p.dim() >= 2}

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, metrics = self.translator.loss(batch, average=self.optim_config["loss_average"])
        batch_size = int(batch["src"].shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in metrics.items():
            self.log(f"train/{name}", value, prog_bar=name == "acc", batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch_size)
        every = self.task_metrics_every_n_steps or (self.trainer.log_every_n_steps if self._trainer else 0)
        if every and "task" in batch and self.global_step % every == 0:
            self._log_task_metrics(batch)
        return loss

    @torch.no_grad()
    def _log_task_metrics(self, batch: dict[str, torch.Tensor]) -> None:
        """Loss and accuracy per task (an extra eval-mode pass per task in the batch)."""
        was_training = self.translator.training
        self.translator.eval()
        try:
            for index in torch.unique(batch["task"]).tolist():
                rows = batch["task"] == index
                sub = {k: v[rows] for k, v in batch.items() if v.dim() > 0 and v.shape[0] == rows.shape[0]}
                loss, metrics = self.translator.loss(sub)
                name = self.tasks[index] if index < len(self.tasks) else str(index)
                size = int(rows.sum())
                self.log(f"task/{name}/loss", loss, batch_size=size)
                for key in ("acc", *(k for k in metrics if k.startswith("acc/cb"))):
                    if key in metrics:
                        self.log(f"task/{name}/{key}", metrics[key], batch_size=size)
        finally:
            self.translator.train(was_training)

    def configure_optimizers(self):
        cfg = self.optim_config
        decay_parameters, other_parameters = [], []
        for name, parameter in self.translator.named_parameters():
            if parameter.requires_grad:
                matrix = unwrapped_parameter_name(name) in self._decay_names
                (decay_parameters if matrix else other_parameters).append(parameter)
        parameters = decay_parameters + other_parameters
        fused = cfg.get("fused")
        if fused is None:
            from umt.utils.optim import fused_adamw_supported

            fused = fused_adamw_supported(parameters) and not self._uses_grad_scaler()
        optimizer = torch.optim.AdamW(
            [
                {"params": decay_parameters, "weight_decay": float(cfg["weight_decay"])},
                {"params": other_parameters, "weight_decay": 0.0},
            ],
            lr=float(cfg["lr"]),
            betas=tuple(cfg["betas"]),
            fused=bool(fused) or None,
        )
        warmup = int(cfg["warmup_steps"])
        decay = cfg["decay_steps"] or max(1, self.max_steps - warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup, int(decay), float(cfg["lr"]), float(cfg["min_lr"])),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _uses_grad_scaler(self) -> bool:
        """Whether the trainer's precision scales the loss (fp16): gradients need unscaling."""
        if self._trainer is None:
            return False
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if not gradient_clip_val:
            return
        if gradient_clip_algorithm not in (None, "norm") or self._uses_grad_scaler():
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return

        wrapped = self.trainer.model
        if isinstance(wrapped, FullyShardedDataParallel):
            wrapped.clip_grad_norm_(float(gradient_clip_val))
        else:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, float(gradient_clip_val))

    # ------------------------------------------------------------- checkpoints
    def _data_tokenizer_hashes(self) -> dict[str, str] | None:
        """Fingerprints of the tokenizers that baked the training shards (from the data module)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        hashes = getattr(datamodule, "tokenizer_hashes", None)
        return None if hashes is None else dict(hashes)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:

        # Every rank's RNG (dropout differs between ranks once their batch shapes have).
        rng = {"torch": gather_from_ranks(torch.get_rng_state())}
        if self.device.type == "cuda":
            rng["cuda"] = gather_from_ranks(torch.cuda.get_rng_state(self.device))
        checkpoint["umt_rng"] = rng
        checkpoint["umt_vocab_hash"] = self.vocab.layout_hash
        hashes = self._data_tokenizer_hashes()
        if hashes is not None:
            checkpoint["umt_tokenizer_hashes"] = hashes

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("umt_vocab_hash")
        if stored is not None and stored != self.vocab.layout_hash:
            from umt.migrate import migration_hint

            raise CheckpointError(
                f"checkpoint vocabulary hash {stored} does not match this config's {self.vocab.layout_hash}"
                + migration_hint(stored, asdict(self.vocab.config))
            )
        trained = checkpoint.get("umt_tokenizer_hashes")
        current = self._data_tokenizer_hashes()
        if trained is not None and current is not None:
            for modality in sorted(set(trained) | set(current)):
                if trained.get(modality) != current.get(modality):
                    raise CheckpointError(
                        f"checkpoint was trained on {modality} tokens of tokenizer "
                        f"{trained.get(modality) or '(none)'}, these shards hold tokenizer "
                        f"{current.get(modality) or '(none)'}"
                    )
        self._restored_rng = checkpoint.get("umt_rng")

    def on_train_start(self) -> None:
        # Restored here, after everything that runs between loading and the first step.
        rng = getattr(self, "_restored_rng", None)
        if rng is not None:
            states = rng["torch"]
            if isinstance(states, torch.Tensor):  # written before every rank's state was kept
                states = [states]
            torch.set_rng_state(_state_of_rank(states, self.global_rank))
            cuda_states = rng.get("cuda")
            if cuda_states is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(_state_of_rank(cuda_states, self.global_rank), self.device)
            self._restored_rng = None


def _state_of_rank(states: list[torch.Tensor], rank: int) -> torch.Tensor:
    """This rank's saved RNG state; rank 0's when the run now has more ranks than it had."""
    return states[rank] if rank < len(states) else states[0]


_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_parameter_name(name: str) -> str:
    """A parameter name without the prefixes FSDP, activation checkpointing and compile insert."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name
