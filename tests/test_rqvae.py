"""RQ-VAE: architecture, parity with the reference implementation on its own weights, training.

The fixture ``tests/fixtures/rqvae_reference/`` was made once by running the model classes of
kakaobrain/rq-vae-transformer (``rqvae/models/rqvae/{rqvae,modules,layers,quantizations}.py`` at
commit 341395e, imported alone from a scratch folder outside this repo) with ``torch.manual_seed(0)``
on a tiny config (``tiny_rqvae/config.yaml``: ch 32, ch_mult [1, 1, 1], one res block, attention at
resolution 8, 4 unshared codebooks of 16 codes of dimension 8): four training-mode forward passes
on the two 32x48 staff-like images in ``expected.npz`` filled the codebooks by EMA with restarts; the
state dict was rounded to float16 (to keep the fixture small), reloaded, and in eval mode the
reference's ``get_codes`` / ``decode_code`` / ``forward`` gave ``codes``, ``decoded`` and
``forward``. ``tiny_rqvae/epoch1_model.pt`` holds ``{"epoch": 1, "state_dict": ...}`` as the
reference trainer saves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umt.errors import CheckpointError, InputError
from umt.models.rqvae import RQVAE, RQVAEConfig, tiny_rqvae_config
from umt.tokenizers.image import ImageTokenizer, load_rqvae

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "rqvae_reference"


# -------------------------------------------------------------------------------- architecture
def test_paper_config_shapes():
    config = RQVAEConfig()
    assert config.downsampling == 16 and config.embed_dim == 256
    assert config.n_embed == 1024 and config.num_codebooks == 4 and not config.shared_codebook
    assert config.decay == 0.99 and config.latent_loss_weight == 0.25 and config.loss_type == "mse"
    assert config.in_channels == config.out_channels == 1 and config.attn_resolutions == ()


@pytest.mark.parametrize("shared", [False, True])
def test_tiny_model_shapes_and_state_dict_names(shared):
    torch.manual_seed(0)
    model = RQVAE(tiny_rqvae_config(shared_codebook=shared)).eval()
    images = torch.rand(2, 1, 32, 64) * 2 - 1
    codes = model.get_codes(images)
    assert codes.shape == (2, 2, 4, 4) and codes.dtype == torch.int64
    assert model.decode_codes(codes).shape == images.shape
    keys = model.state_dict().keys()
    for name in (
        "encoder.down.0.block.0.conv1.weight",
        "encoder.down.3.downsample.conv.weight",
        "encoder.mid.attn_1.q.weight",
        "decoder.up.4.upsample.conv.weight",
        "decoder.up.0.block.1.conv2.bias",
        "quantizer.codebooks.3.embed_ema",
        "quantizer.codebooks.0.cluster_size_ema",
        "quant_conv.weight",
        "post_quant_conv.weight",
    ):
        assert name in keys
    assert model.quantizer.codebooks[0].weight.shape == (33, 16)  # n_embed + padding row
    assert (model.quantizer.codebooks[0] is model.quantizer.codebooks[3]) == shared


def test_residual_quantization_reduces_error():
    torch.manual_seed(0)
    model = RQVAE(tiny_rqvae_config()).train()
    latents = torch.randn(4, 2, 4, 16)
    for _ in range(5):  # fill the codebooks with data vectors
        model.quantizer(latents)
    model.eval()
    cumulative, _ = model.quantizer.quantize(latents)
    errors = [float((latents - q).pow(2).mean()) for q in cumulative]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


# ------------------------------------------------------------------------------ reference parity
@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURE / "expected.npz")


def test_reference_checkpoint_gives_the_same_codes_and_images(expected):
    tokenizer = load_rqvae(FIXTURE / "tiny_rqvae")
    assert tokenizer.config.ch_mult == (1, 1, 1) and tokenizer.config.attn_resolutions == (8,)
    images = torch.from_numpy(expected["images"])
    codes = tokenizer.encode(images)
    np.testing.assert_array_equal(codes.numpy(), expected["codes"])
    assert len(np.unique(expected["codes"][..., 0])) > 4  # a meaningful comparison
    np.testing.assert_allclose(tokenizer.decode(codes).numpy(), expected["decoded"], atol=1e-4)
    with torch.no_grad():
        reconstructions, _, forward_codes = tokenizer.model.eval()(images)
    np.testing.assert_allclose(reconstructions.numpy(), expected["forward"], atol=1e-4)
    assert torch.equal(forward_codes, codes)


def test_reference_folder_errors(tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "tiny_rqvae", folder)
    (folder / "epoch1_model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_rqvae(folder)
    state = torch.load(FIXTURE / "tiny_rqvae" / "epoch1_model.pt", weights_only=True)["state_dict"]
    del state["encoder.mid.attn_1.q.weight"]
    torch.save({"state_dict": state}, folder / "epoch1_model.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_rqvae(folder)
    (folder / "epoch1_model.pt").unlink()
    with pytest.raises(CheckpointError, match=r"no \*\.pt"):
        load_rqvae(folder)
    with pytest.raises(CheckpointError):
        load_rqvae(tmp_path / "missing")


def test_reference_checkpoint_exports_and_reloads(tmp_path, expected):
    tokenizer = load_rqvae(FIXTURE / "tiny_rqvae")
    tokenizer.save_pretrained(tmp_path / "exported")
    restored = ImageTokenizer.from_pretrained(tmp_path / "exported")
    assert restored.fingerprint == tokenizer.fingerprint
    images = torch.from_numpy(expected["images"])
    np.testing.assert_array_equal(restored.encode(images).numpy(), expected["codes"])


# ------------------------------------------------------------------------------------- training
def _write_score_images(folder: Path, count: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.full((60, 140), 250, np.uint8)
        for line in range(5):
            image[10 + 6 * line, 4:136] = 30
        for x in rng.integers(10, 125, size=6):
            y = int(rng.integers(8, 30))
            image[y : y + 5, x : x + 6] = 15
        Image.fromarray(image).save(folder / f"system{index}.png")


def tiny_training_config(tmp_path: Path, images) -> dict:
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "tokenizer" / "rqvae_tiny.yaml"
    cfg = OmegaConf.load(conf)
    cfg.data.images = str(images)
    cfg.output_dir = str(tmp_path / "run")
    return cfg


def test_training_updates_codebooks_and_exports(tmp_path):
    from umt.training.rqvae import ImageCropDataset, RQVAELightning, fit_rqvae, list_image_files

    _write_score_images(tmp_path / "images")
    cfg = tiny_training_config(tmp_path, tmp_path / "images")
    files = list_image_files(cfg.data.images)
    assert len(files) == 3
    dataset = ImageCropDataset(files, 32, 64, samples_per_epoch=4)
    batch = torch.stack([dataset[i] for i in range(4)])
    assert batch.shape == (4, 1, 32, 64) and float(batch.min()) < 0

    # A few manual steps: the loss is finite and falls, the EMA statistics move.
    torch.manual_seed(0)
    module = RQVAELightning(dict(cfg.model), lr=1e-3)
    optimizer = module.configure_optimizers()
    before = module.model.quantizer.codebooks[0].cluster_size_ema.clone()
    module.model.train()
    losses = []
    for _ in range(8):
        reconstructions, commitment, _ = module.model(batch)
        loss = module.model.compute_loss(reconstructions, commitment, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not torch.equal(module.model.quantizer.codebooks[0].cluster_size_ema, before)
    assert not any(p.requires_grad for cb in module.model.quantizer.codebooks for p in cb.parameters())

    # The whole entry point: Lightning fit, export, reload, identical codes.
    trained, export = fit_rqvae(cfg)
    assert trained.trainer.global_step == cfg.trainer.max_steps
    usage = trained.model.quantizer.usage()
    assert usage.shape == (4,) and float(usage.min()) > 0
    restored = ImageTokenizer.from_pretrained(export)
    assert restored.config == trained.model.config  # rebuilt from the exported config alone
    x = torch.cat([restored.load(f)[None][..., :48, :96] for f in files])
    expected_codes = trained.model.eval().get_codes(x)
    assert torch.equal(restored.encode(x), expected_codes)
    np.testing.assert_allclose(restored.decode(expected_codes), trained.model.decode_codes(expected_codes))


def test_lightning_checkpoint_rebuilds_the_model(tmp_path):
    import lightning as L

    from umt.training.rqvae import RQVAELightning

    torch.manual_seed(0)
    module = RQVAELightning(tiny_rqvae_config().to_dict())
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = RQVAELightning.load_from_checkpoint(path, weights_only=False)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert torch.equal(rebuilt.model.eval().get_codes(x), module.model.eval().get_codes(x))


def test_training_names_a_bad_image(tmp_path):
    from umt.training.rqvae import train_rqvae

    _write_score_images(tmp_path / "images", count=1)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG garbage")
    cfg = tiny_training_config(tmp_path, tmp_path / "images")
    with pytest.raises(InputError, match=r"broken\.png"):
        train_rqvae(cfg)


def test_a_bad_header_fails_before_training_in_one_line(tmp_path, monkeypatch):
    import umt.training.rqvae as training

    _write_score_images(tmp_path / "images", count=2)
    (tmp_path / "images" / "zz_text.png").write_text("not an image")
    decoded = []
    monkeypatch.setattr(training, "read_image", lambda path: decoded.append(path))
    with pytest.raises(InputError) as caught:
        training.fit_rqvae(tiny_training_config(tmp_path, tmp_path / "images"))
    assert str(caught.value).startswith(str(tmp_path / "images" / "zz_text.png") + ": not a readable image")
    assert len(str(caught.value).splitlines()) == 1
    assert decoded == [] and not (tmp_path / "run").exists()  # headers only, nothing trained


def test_images_are_read_lazily_into_a_bounded_cache(tmp_path, monkeypatch):
    import umt.training.rqvae as training

    _write_score_images(tmp_path / "images", count=6)
    files = training.list_image_files(tmp_path / "images")
    bounded = training.ImageCropDataset(files, 32, 64, samples_per_epoch=18, cache_images=2)
    uncached = training.ImageCropDataset(files, 32, 64, samples_per_epoch=18, cache_images=0)
    for item in range(len(bounded)):
        assert torch.equal(bounded[item], uncached[item])
        assert len(bounded._cache) <= 2
    assert not uncached._cache

    # Training decodes only what its batches use (2 steps of 1 image, plus Lightning's prefetch).
    decoded = []
    read_image = training.read_image
    monkeypatch.setattr(training, "read_image", lambda path: decoded.append(path) or read_image(path))
    cfg = tiny_training_config(tmp_path, tmp_path / "images")
    cfg.trainer.max_steps, cfg.data.batch_size, cfg.data.samples_per_epoch = 2, 1, 6
    cfg.trainer.enable_checkpointing = False
    trained, _ = training.fit_rqvae(cfg)
    assert trained.trainer.global_step == 2
    assert 2 <= len(decoded) <= 3 < len(files)


def test_undecodable_pixels_stop_training_with_one_line_naming_the_file(tmp_path):
    from umt.training.rqvae import check_image_header, fit_rqvae

    _write_score_images(tmp_path / "images", count=1)
    good = (tmp_path / "images" / "system0.png").read_bytes()
    truncated = tmp_path / "images" / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])  # the header reads, the pixels do not
    assert check_image_header(truncated) == (140, 60)
    cfg = tiny_training_config(tmp_path, tmp_path / "images")
    cfg.data.num_workers = 1  # the error is raised in a loader worker and comes back wrapped
    cfg.data.samples_per_epoch = 4
    with pytest.raises(InputError) as caught:
        fit_rqvae(cfg)
    message = str(caught.value)
    assert message.startswith(f"{truncated}: not a readable image") and len(message.splitlines()) == 1


def test_training_resumes_from_the_last_checkpoint_when_rerun(tmp_path, monkeypatch):
    from umt.training.rqvae import RQVAELightning, fit_rqvae

    _write_score_images(tmp_path / "images")
    steps = []
    training_step = RQVAELightning.training_step

    def counted(self, batch, batch_index):
        steps.append(self.global_step)
        return training_step(self, batch, batch_index)

    monkeypatch.setattr(RQVAELightning, "training_step", counted)
    cfg = tiny_training_config(tmp_path, tmp_path / "images")
    assert cfg.resume == "auto" and cfg.trainer.checkpoint_every_n_steps == 3
    cfg.trainer.max_steps = 4
    first, _ = fit_rqvae(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert steps == [0, 1, 2, 3] and saved["global_step"] == 4  # the final step, not the step-3 save
    weights = {k.removeprefix("model."): v for k, v in saved["state_dict"].items()}
    assert all(torch.equal(v, first.model.state_dict()[k]) for k, v in weights.items())

    steps.clear()
    cfg.trainer.max_steps = 6
    second, export = fit_rqvae(cfg)
    assert steps == [4, 5] and second.trainer.global_step == 6  # continued, not restarted
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    assert ImageTokenizer.from_pretrained(export).fingerprint == ImageTokenizer(second.model).fingerprint
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt", "step-00000006.ckpt"]

    steps.clear()
    cfg.model.n_embed = 16
    with pytest.raises(CheckpointError, match="another model config"):
        fit_rqvae(cfg)
    assert steps == []
    cfg.resume = str(tmp_path / "nowhere.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        fit_rqvae(cfg)


def test_ink_weighting_counts_missed_ink_more_than_smeared_paper():
    """optim.ink_weight: the reconstruction loss is a mean weighted 1 + w on ink, 1 on paper."""
    from umt.training.rqvae import RQVAELightning

    module = RQVAELightning(tiny_rqvae_config().to_dict(), ink_weight=4.0)
    target = torch.ones(1, 1, 4, 4)
    target[..., 0, :] = -1.0  # one row of ink (a staff line), three of paper
    weights = module._pixel_weights(target)
    assert weights.sum() == 4 * 5 + 12 * 1
    lost_line, grey_paper = torch.ones_like(target), target.clone()
    grey_paper[..., 1:, :] = 0.0  # paper smeared half-way to ink
    zero = torch.zeros(())
    model = module.model
    weighted = [float(model.compute_loss(x, zero, target, weights)["recon"]) for x in (lost_line, grey_paper)]
    plain = [float(model.compute_loss(x, zero, target)["recon"]) for x in (lost_line, grey_paper)]
    # squared error 4 on each of 4 ink pixels (weight 5), or 1 on each of 12 paper pixels (weight 1)
    assert weighted == pytest.approx([4 * 4 * 5 / 32, 12 * 1 / 32])  # losing the line costs most
    assert plain == pytest.approx([4 * 4 / 16, 12 / 16])  # unweighted, the smear cost nearly as much
    assert RQVAELightning(tiny_rqvae_config().to_dict())._pixel_weights(target) is None


def test_cosine_schedule_ends_at_zero_and_unknown_schedules_are_refused(tmp_path):
    import lightning as L

    from umt.errors import UserError
    from umt.training.rqvae import RQVAELightning

    module = RQVAELightning(tiny_rqvae_config().to_dict(), lr=1e-3, lr_schedule="cosine")
    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(1e-3) and rates[5] == pytest.approx(5e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UserError, match="lr_schedule must be one of constant, cosine"):
        RQVAELightning(tiny_rqvae_config().to_dict(), lr_schedule="linear")
