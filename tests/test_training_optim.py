"""Optimiser set-up of the training module: fused AdamW, gradient clipping, weight-decay groups,
and the FSDP strategy (FSDP itself needs CUDA: see tests/test_training_gpu.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests._training_fixtures import TINY_VOCAB, make_shards, tiny_vocab
from umt.modalities import PAPER_MODALITIES


def _module(**optim):
    from umt.models.translator import TranslatorConfig
    from umt.training.translation import TranslationModule

    return TranslationModule(
        model=TranslatorConfig.tiny().to_dict(), vocab=dict(TINY_VOCAB), optim=optim, max_steps=10
    )


def _groups(optimizer) -> tuple[set[int], set[int]]:
    decay, other = optimizer.param_groups
    assert decay["weight_decay"] > 0 and other["weight_decay"] == 0
    return {id(p) for p in decay["params"]}, {id(p) for p in other["params"]}


def test_fused_adamw_by_default_where_torch_has_it() -> None:
    module = _module()
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is True
    assert not _module(fused=False).configure_optimizers()["optimizer"].defaults["fused"]
    # fp16 scales the loss: the fused kernel would unscale inside step(), after clipping.
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))
    assert not module.configure_optimizers()["optimizer"].defaults["fused"]


def test_weight_decay_goes_to_matrices_even_after_parameters_are_flattened() -> None:
    module = _module()
    matrices = {id(p) for p in module.translator.parameters() if p.dim() >= 2}
    vectors = {id(p) for p in module.translator.parameters() if p.dim() < 2}
    assert _groups(module.configure_optimizers()["optimizer"]) == (matrices, vectors)
    # FSDP with use_orig_params exposes each parameter as a flat 1-D shard.
    for parameter in module.translator.parameters():
        parameter.data = parameter.data.reshape(-1)
    assert _groups(module.configure_optimizers()["optimizer"]) == (matrices, vectors)


def test_unwrapped_parameter_names() -> None:
    from umt.training.translation import unwrapped_parameter_name

    wrapped = "translator.decoder.0._fsdp_wrapped_module._checkpoint_wrapped_module.ff.up.weight"
    assert unwrapped_parameter_name(wrapped) == "translator.decoder.0.ff.up.weight"
    assert unwrapped_parameter_name("head.bias") == "head.bias"


def test_gradient_clipping_by_norm_without_lightnings_precision_plugin() -> None:
    module = _module()
    optimizer = module.configure_optimizers()["optimizer"]
    module._trainer = SimpleNamespace(model=module, precision_plugin=SimpleNamespace(scaler=None))
    for parameter in module.parameters():
        parameter.grad = torch.full_like(parameter, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, "norm")
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
    assert norm.item() == pytest.approx(0.5, rel=1e-4)
    module.configure_gradient_clipping(optimizer, 0.0, "norm")  # off: nothing changes
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()])) == norm


def test_mixed_precision_training_with_fused_adamw_and_clipping(tmp_path: Path) -> None:
    """Lightning refuses to clip for a fused optimiser under mixed precision; the module clips itself."""
    from umt.training.config import compose
    from umt.training.train import train

    shards = make_shards(tmp_path / "shards", tiny_vocab())
    overrides = [
        "experiment=tiny",
        f"data.root={shards}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.max_steps=2",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=0.5",
        "logger.kind=none",
    ]
    trainer = train(compose(overrides))
    assert trainer.global_step == 2
    assert trainer.optimizers[0].defaults["fused"] is True


def test_fsdp_strategy_shards_blocks_and_writes_full_checkpoints() -> None:
    from lightning.pytorch.strategies import FSDPStrategy

    from umt.models.transformer import DecoderLayer, EncoderLayer
    from umt.training.train import resolve_strategy

    strategy = resolve_strategy("fsdp")
    assert type(strategy) is FSDPStrategy
    assert strategy._state_dict_type == "full"
    assert strategy.kwargs["use_orig_params"] is True
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {EncoderLayer, DecoderLayer}


def test_fsdp_on_cpu_is_refused_with_one_line() -> None:
    from umt.errors import UserError
    from umt.training.config import compose, validate
    from umt.training.train import build

    cfg = validate(
        compose(["experiment=tiny", "data.root=unused", "trainer.strategy=fsdp", "trainer.accelerator=cpu"])
    )
    with pytest.raises(UserError, match="fsdp runs on CUDA devices only"):
        build(cfg)


@pytest.mark.parametrize("target", ["midi", "audio"])
def test_training_uses_block_weights_only_inside_block_forwards(target: str) -> None:
    """FSDP gathers a block's sharded weights around that block's ``forward`` only: a training
    pass that reaches into a block any other way (e.g. calling a sub-module method of a wrapped
    decoder layer from outside) would read flat shards on a GPU cluster. Emulated here with hooks:
    every Linear / LayerNorm inside an encoder, decoder or sub-decoder block must run while its
    block's forward is running."""
    from umt.models.transformer import DecoderLayer, EncoderLayer

    module = _module()
    model = module.translator.train()
    active: set[int] = set()
    outside: list[str] = []

    def enter(block, *_):
        active.add(id(block))

    def leave(block, *_):
        active.discard(id(block))

    for block in model.modules():
        if isinstance(block, (EncoderLayer, DecoderLayer)):
            block.register_forward_pre_hook(enter)
            block.register_forward_hook(leave)
            for name, leaf in block.named_modules():
                if isinstance(leaf, (torch.nn.Linear, torch.nn.LayerNorm)):

                    def check(leaf, _inputs, block=block, name=name):
                        if id(block) not in active:
                            outside.append(f"{type(block).__name__}.{name}")

                    leaf.register_forward_pre_hook(check)
    vocab = tiny_vocab()
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(vocab["audio/cb0"].start, vocab["audio/cb0"].stop, (2, 6, 2), generator=generator)
    src[:, 0] = torch.tensor(vocab.special_row(vocab.sos("audio")))
    if target == "midi":
        pitches = torch.randint(
            vocab["midi/pitch"].start, vocab["midi/pitch"].stop, (2, 5), generator=generator
        )
        tgt = torch.stack([pitches, torch.zeros_like(pitches)], dim=-1)
    else:  # two codebooks: the sub-decoder runs both slots
        codes = torch.randint(0, vocab["audio/cb0"].size, (2, 5, 2), generator=generator)
        tgt = torch.from_numpy(vocab.codes_to_ids("audio", codes.numpy()))
    tgt[:, 0] = torch.tensor(vocab.special_row(vocab.sos(target)))
    batch = {
        "src": src,
        "src_mask": torch.ones(2, 6, dtype=torch.bool),
        "tgt": tgt,
        "tgt_mask": torch.ones(2, 5, dtype=torch.bool),
        "tgt_modality": torch.full((2,), PAPER_MODALITIES.index(target)),
    }
    loss, _ = model.loss(batch)
    loss.backward()
    assert not outside, sorted(set(outside))


def test_loss_average_setting_reaches_the_model_and_bad_values_are_one_line(
    tmp_path: Path, monkeypatch
) -> None:
    from umt.errors import UserError
    from umt.models.translator import Translator
    from umt.training.config import compose
    from umt.training.train import train

    shards = make_shards(tmp_path / "shards", tiny_vocab())
    common = ["experiment=tiny", f"data.root={shards}", "trainer.max_steps=2", "logger.kind=none"]
    seen: list[str] = []
    original = Translator.loss

    def spy(self, batch, average="token"):
        seen.append(average)
        return original(self, batch, average)

    monkeypatch.setattr(Translator, "loss", spy)
    trainer = train(compose([*common, f"run_dir={tmp_path / 'run'}", "optim.loss_average=example"]))
    assert trainer.global_step == 2 and "example" in seen
    with pytest.raises(UserError, match=r"optim\.loss_average must be token or example"):
        train(compose([*common, f"run_dir={tmp_path / 'bad'}", "optim.loss_average=sentence"]))
