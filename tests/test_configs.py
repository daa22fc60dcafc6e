"""Every Hydra config composes (one case per experiment file); typos fail; the tiny one builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from umt.training.config import compose, conf_dir, validate

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    extra = ["init_from=/weights.ckpt", "mixture=omr"] if experiment == "finetune" else []
    cfg = validate(compose([f"experiment={experiment}", "data.root=/shards", *extra]))
    from umt.tasks import mixture_from_dict

    mixture = mixture_from_dict(cfg.mixture.name, OmegaConf.to_container(cfg.mixture))
    # by the end every stream of the mixture is in, at its full weight (curricula have ended)
    rates = mixture.rates(10**6)
    assert all(rate > 0 for rate in rates.values()) and sum(rates.values()) == pytest.approx(1.0)
    weights = {name: mixture.entries[i].weight for (*_, i), name in zip(mixture.streams, rates)}
    total = sum(weights.values())
    assert rates == pytest.approx({name: weight / total for name, weight in weights.items()})
    assert cfg.trainer.max_steps > 0
    # One window for audio and MIDI: its audio rows fit max_len (else every window would be left
    # out) and its MIDI shifts fit the vocabulary (else encoding would refuse it).
    # (tiny trains on made-up shards; the demo's excerpts are shorter than its window.)
    if experiment not in ("demo", "tiny"):
        window = cfg.data.window_seconds
        assert window * 44100 / 512 <= cfg.data.max_len.audio <= cfg.model.max_source_len - 2
    if experiment != "tiny":
        assert cfg.data.window_seconds * 100 - 1 <= cfg.vocab.midi_max_shift


def test_table_iii_rows_exist():
    rows = {
        "omr_only",
        "i2a_only",
        "m2a_only",
        "omr_i2a",
        "omr_i2a_m2a",
        "amt_only",
        "a2i_only",
        "amt_a2i",
        "amt_a2i_l2i",
    }
    assert rows <= set(EXPERIMENTS)


def test_registered_mixtures_and_model_presets_are_hydra_options():
    """One source: the mixtures and model presets are defined in Python and composed by Hydra."""
    from umt.models.translator import TranslatorConfig
    from umt.tasks import MIXTURES, mixture_from_dict

    for name in MIXTURES.names():
        cfg = compose([f"mixture={name}", "data.root=/x"])
        assert mixture_from_dict(name, OmegaConf.to_container(cfg.mixture)) == MIXTURES.get(name)
    for name, preset in (("tiny", TranslatorConfig.tiny()), ("paper", TranslatorConfig.paper())):
        cfg = compose([f"model={name}", "data.root=/x"])
        assert TranslatorConfig(**OmegaConf.to_container(cfg.model)) == preset
    assert not (Path(conf_dir()) / "mixture").exists() and not (Path(conf_dir()) / "model").exists()


def test_typo_and_missing_values_fail():
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(ConfigCompositionException):
        compose(["experiment=tiny", "data.root=/x", "optim.lrr=1"])
    with pytest.raises(MissingMandatoryValue):
        _ = validate(compose(["experiment=tiny"])).data.root


def test_tiny_config_instantiates_the_module(tmp_path):
    from tests._training_fixtures import make_shards, tiny_vocab
    from umt.training.train import build

    shards = make_shards(tmp_path / "shards", tiny_vocab())
    cfg = validate(compose(["experiment=tiny", f"data.root={shards}", f"run_dir={tmp_path / 'run'}"]))
    _trainer, module, _datamodule, ckpt = build(cfg)
    assert ckpt is None and module.translator.config.d_model == 32
    assert module.hparams["model"]["d_model"] == 32  # plain dicts: a checkpoint rebuilds the model


def test_umt_train_cli_reports_bad_overrides_in_one_line(capsys):
    from umt.cli import main

    assert main(["train", "experiment=tiny", "data.root=/x", "--print-config"]) == 0
    assert "d_model: 32" in capsys.readouterr().out
    assert main(["train", "experiment=tiny", "data.root=/x", "optim.lrr=1"]) == 2
    assert capsys.readouterr().err.startswith("umt: error: bad training config")
