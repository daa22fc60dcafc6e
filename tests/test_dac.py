"""The DAC codec against the reference implementation, and the training recipe.

Fixture ``tests/fixtures/dac_reference/`` was made once by running descript-audio-codec's own model
code (``dac/model/dac.py``, ``dac/nn/layers.py``, ``dac/nn/quantize.py`` at the repository's main branch,
imported with a small stand-in for ``audiotools`` whose ``BaseModel.save(package=False)`` mirrors the
real one: ``{"state_dict": ..., "metadata": {"kwargs": <init args>}}``): ``DAC(encoder_dim=4,
encoder_rates=[2, 4, 8, 8], latent_dim=16, decoder_dim=32, decoder_rates=[8, 8, 4, 2], n_codebooks=4,
codebook_size=64, codebook_dim=8)`` with ``torch.manual_seed(1234)`` and every parameter re-drawn at
random (alphas in [0.25, 1.75], gains scaled, codebooks N(0, 1)), saved with ``model.save(path,
package=False)`` (torch's ``weight_norm``: ``weight_g`` / ``weight_v`` keys) as ``tiny_dac.pth``.
``expected.safetensors`` holds a 2 x 3000-sample input (440 Hz + 1234.5 Hz sines + noise, and a
reversed scaled copy), the reference's ``encode`` codes after ``preprocess``, its encoder latents,
and ``decode(quantizer.from_codes(codes))``. The generating script is not part of the repository.
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from umt.errors import CheckpointError
from umt.models.dac import DAC, DACConfig, WNConv1d, normalise_state_dict_keys
from umt.models.dac_discriminators import Discriminator, MelSpectrogramLoss, mel_filterbank
from umt.tokenizers.audio import AudioTokenizer, load_codec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dac_reference"


@pytest.fixture(scope="module")
def reference():
    return load_file(FIXTURES / "expected.safetensors")


def test_reference_checkpoint_gives_identical_codes_and_audio(reference):
    codec = load_codec(FIXTURES / "tiny_dac.pth")
    assert codec.config.encoder_rates == (2, 4, 8, 8) and codec.hop_length == 512
    assert codec.config.n_codebooks == 4 and codec.config.latent_dim == 16
    codes = codec.encode(reference["audio"])
    assert codes.shape == (2, 4, 6) == reference["codes"].shape  # ceil(3000 / 512) frames
    assert torch.equal(codes, reference["codes"])
    with torch.no_grad():
        latents = codec.encode_latents(reference["audio"])
    assert torch.allclose(latents, reference["latents"], atol=1e-4)
    decoded = codec.decode(codes)
    assert decoded.shape == (2, 1, 6 * 512)
    assert (decoded - reference["decoded"]).abs().max() < 1e-4


def test_parametrized_weight_norm_keys_load(tmp_path, reference):
    saved = torch.load(FIXTURES / "tiny_dac.pth", weights_only=True)
    renamed = {}
    for key, value in saved["state_dict"].items():
        key = key.replace(".weight_g", ".parametrizations.weight.original0")
        renamed[key.replace(".weight_v", ".parametrizations.weight.original1")] = value
    assert any("parametrizations" in key for key in renamed)
    assert normalise_state_dict_keys(renamed).keys() == saved["state_dict"].keys()
    torch.save({"state_dict": renamed, "metadata": saved["metadata"]}, tmp_path / "new_style.pth")
    codec = load_codec(tmp_path / "new_style.pth")
    assert torch.equal(codec.encode(reference["audio"]), reference["codes"])


def test_numpy_metadata_is_allowed_but_code_is_not(tmp_path, reference):
    saved = torch.load(FIXTURES / "tiny_dac.pth", weights_only=True)
    saved["metadata"]["logs"] = {"mel/loss": np.float32(1.5), "curve": np.arange(3)}
    torch.save(saved, tmp_path / "with_numpy.pth")
    assert torch.equal(load_codec(tmp_path / "with_numpy.pth").encode(reference["audio"]), reference["codes"])

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    saved["metadata"]["evil"] = Payload()
    torch.save(saved, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth"):
        load_codec(tmp_path / "evil.pth")


def test_bad_codec_files_raise_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        load_codec(garbage)
    with pytest.raises(CheckpointError, match="no such codec file"):
        load_codec(tmp_path / "missing.pth")
    no_kwargs = tmp_path / "no_kwargs.pth"
    torch.save({"state_dict": {}, "metadata": {}}, no_kwargs)
    with pytest.raises(CheckpointError, match="kwargs"):
        load_codec(no_kwargs)
    saved = torch.load(FIXTURES / "tiny_dac.pth", weights_only=True)
    saved["metadata"]["kwargs"]["n_codebooks"] = 5
    torch.save(saved, tmp_path / "mismatch.pth")
    with pytest.raises(CheckpointError, match="do not match"):
        load_codec(tmp_path / "mismatch.pth")
    package = tmp_path / "package.pth"
    with torch.package.PackageExporter(package) as exporter:
        exporter.save_pickle("DAC", "DAC.metadata", {"kwargs": {}})
    with pytest.raises(CheckpointError, match=r"torch\.package archive"):
        load_codec(package)
    pickled = tmp_path / "plain_pickle.pth"
    pickled.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(CheckpointError, match=r"plain_pickle\.pth"):
        load_codec(pickled)


@pytest.mark.parametrize("length", [1, 511, 512, 513, 2048])
def test_frame_count_is_ceil_of_length_over_hop(length):
    torch.manual_seed(0)
    codec = DAC(DACConfig.tiny()).eval()
    codes = codec.encode(torch.randn(3, 1, length))
    frames = -(-length // 512)
    assert codes.shape == (3, 4, frames) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < 64
    assert codec.decode(codes).shape == (3, 1, frames * 512)


def test_paper_config_sizes():
    config = DACConfig()
    assert config.hop_length == 512 and abs(config.frame_rate - 86.1328125) < 1e-9
    assert config.latent_dim == 1024 and config.n_codebooks == 4 and config.codebook_size == 1024
    assert DACConfig.from_kwargs(config.to_dict()) == config


def test_weight_norm_matches_definition():
    conv = WNConv1d(3, 5, kernel_size=3)
    with torch.no_grad():
        conv.weight_g.mul_(torch.rand_like(conv.weight_g) + 0.5)
    weight = conv.normed_weight()
    norms = weight.flatten(1).norm(dim=1)
    assert torch.allclose(norms, conv.weight_g.flatten(), atol=1e-6)
    assert sorted(name for name, _ in conv.named_parameters()) == ["bias", "weight_g", "weight_v"]


def test_quantizer_dropout_and_gradients_in_training():
    torch.manual_seed(0)
    model = DAC(DACConfig.tiny(quantizer_dropout=1.0)).train()
    audio = torch.randn(4, 1, 1024) * 0.3
    out = model(audio)
    assert out["audio"].shape == audio.shape and out["codes"].shape == (4, 4, 2)
    loss = (out["audio"] - audio).abs().mean() + out["vq/commitment_loss"] + out["vq/codebook_loss"]
    loss.backward()
    assert model.encoder.block[0].weight_v.grad.abs().sum() > 0  # straight-through reaches the encoder
    assert model.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0


def test_mel_filterbank_is_slaney_normalised():
    sample_rate, n_fft = 44100, 8192
    filters = mel_filterbank(sample_rate, n_fft, 40)
    assert filters.shape == (40, n_fft // 2 + 1) and (filters >= 0).all()
    bin_hz = sample_rate / n_fft
    areas = filters.sum(axis=1) * bin_hz  # Slaney norm: each triangle has unit area in Hz
    assert np.allclose(areas, 1.0, atol=0.05)
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) > 0).all()


def test_mel_loss_and_discriminator_shapes():
    torch.manual_seed(0)
    audio = torch.randn(2, 1, 2048) * 0.3
    mel = MelSpectrogramLoss(n_mels=(5, 10), window_lengths=(32, 64))
    assert mel(audio, audio) == 0
    assert mel(audio * 0.5, audio) > 0
    critic = Discriminator(periods=(2,), fft_sizes=(128,))
    maps = critic(audio)
    assert len(maps) == 2 and len(maps[0]) == 6 and len(maps[1]) == 5 * 5 + 1
    assert maps[1][-1].shape[2] == 2048 // 32  # match_stride: one frame per hop


CONF = Path(__file__).resolve().parents[1] / "conf" / "tokenizer"


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}


def test_paper_critics_have_the_reference_widths_and_small_configs_narrow_ones():
    from omegaconf import OmegaConf

    from umt.models.dac_discriminators import MPD, MPD_CHANNELS, MRD, MRD_CHANNELS

    paper = OmegaConf.to_container(OmegaConf.load(CONF / "dac.yaml").discriminator)
    assert (paper["mpd_channels"], paper["mrd_channels"]) == (list(MPD_CHANNELS), MRD_CHANNELS)
    assert (paper["periods"], paper["fft_sizes"]) == ([2, 3, 5, 7, 11], [2048, 1024, 512])
    # The reference's layer shapes (one critic of each kind; the others differ only in period / window).
    period, spectral = _shapes(MPD(2)), _shapes(MRD(2048))
    assert [shape for name, shape in period.items() if name.endswith("weight_v")] == [
        (32, 1, 5, 1), (128, 32, 5, 1), (512, 128, 5, 1), (1024, 512, 5, 1), (1024, 1024, 5, 1),
        (1, 1024, 3, 1),
    ]  # fmt: skip
    assert spectral["band_convs.0.0.0.weight_v"] == (32, 2, 3, 9)
    assert spectral["band_convs.4.4.0.weight_v"] == (32, 32, 3, 3)
    assert spectral["conv_post.weight_v"] == (1, 32, 3, 3)
    count = [sum(math.prod(shape) for shape in shapes.values()) for shapes in (period, spectral)]
    assert 5 * count[0] + 3 * count[1] == 42_519_760  # the reference Discriminator's parameter count
    # The tiny and demo configs must not spend their time on critics far bigger than the generator.
    for name in ("dac_tiny", "dac_demo"):
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
        critic = Discriminator(**cfg["discriminator"])
        generator = DAC(DACConfig.from_kwargs(cfg["model"]))
        sizes = [sum(p.numel() for p in m.parameters()) for m in (critic, generator)]
        assert sizes[0] <= sizes[1], (name, sizes)
    with pytest.raises(ValueError, match="mpd_channels needs 5 positive widths"):
        Discriminator(periods=(2,), fft_sizes=(), mpd_channels=(8, 8))
    with pytest.raises(ValueError, match="mrd_channels"):
        Discriminator(periods=(), fft_sizes=(128,), mrd_channels=0)


def test_narrow_critics_give_the_same_feature_map_layout():
    torch.manual_seed(0)
    audio = torch.randn(2, 1, 2048) * 0.3
    wide = Discriminator(periods=(3,), fft_sizes=(128,))(audio)
    critic = Discriminator(periods=(3,), fft_sizes=(128,), mpd_channels=(2, 4, 4, 8, 8), mrd_channels=3)
    narrow = critic(audio)
    assert [len(maps) for maps in narrow] == [len(maps) for maps in wide]
    for wide_maps, narrow_maps in zip(wide, narrow):
        assert narrow_maps[-1].shape == wide_maps[-1].shape  # logits
        assert [m.shape[2:] for m in narrow_maps] == [m.shape[2:] for m in wide_maps]
    assert narrow[0][0].shape[1] == 2 and narrow[1][0].shape[1] == 3


def test_tiny_training_iterations_change_weights_and_export(tmp_path):
    lightning = pytest.importorskip("lightning")
    from omegaconf import OmegaConf

    from umt.training.dac import DACTrainingModule

    config = OmegaConf.load(CONF / "dac_tiny.yaml")
    torch.manual_seed(0)
    module = DACTrainingModule(config)
    generator_before = copy.deepcopy(module.generator.state_dict())
    critic_before = copy.deepcopy(module.discriminator.state_dict())
    t = torch.arange(2205) / 44100
    data = [
        (0.5 * torch.sin(2 * torch.pi * f * t) + 0.05 * torch.randn(2205))[None] for f in (220, 330, 440, 550)
    ]
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    trainer = lightning.Trainer(
        max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, loader)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/mel/loss", "train/adv/disc_loss", "train/vq/commitment_loss"):
        assert torch.isfinite(metrics[name]), name
    changed = [k for k, v in module.generator.state_dict().items() if not torch.equal(v, generator_before[k])]
    assert "encoder.block.0.weight_v" in changed and any(k.startswith("decoder") for k in changed)
    assert any(not torch.equal(v, critic_before[k]) for k, v in module.discriminator.state_dict().items())

    module.export_tokenizer(tmp_path / "tok", chunk_frames=8)
    restored = AudioTokenizer.from_pretrained(tmp_path / "tok")
    audio = torch.randn(1, 1, 512 * 20 + 7) * 0.3
    expected = module.generator.eval().encode(audio)
    assert torch.equal(restored.encode(audio), expected)
    assert restored.codec.config == module.model_config


def test_excerpt_dataset_reads_files_and_normalises(tmp_path):
    import soundfile

    from umt.training.dac import AudioExcerptDataset

    t = np.arange(22050) / 22050
    soundfile.write(tmp_path / "a.wav", (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 22050)
    soundfile.write(tmp_path / "b.flac", (0.2 * np.sin(2 * np.pi * 500 * t[:3000])).astype(np.float32), 22050)
    dataset = AudioExcerptDataset([tmp_path / "a.wav", tmp_path / "b.flac"], duration=0.1, length=6, seed=3)
    items = [dataset[i] for i in range(len(dataset))]
    assert all(item.shape == (1, 4410) for item in items)
    assert all(abs(float(item.abs().max()) - 0.9) < 1e-5 for item in items)
    assert torch.equal(dataset[2], items[2])  # deterministic per index


def test_inference_snake_is_bitwise_the_autograd_formula_and_leaves_its_input():
    from umt.models.dac import Snake1d, snake, snake_inference

    torch.manual_seed(0)
    layer = Snake1d(6)
    with torch.no_grad():
        layer.alpha.uniform_(0.05, 3.0)
    x = torch.randn(3, 6, 500) * 4
    before = x.clone()
    with torch.no_grad():
        fast = layer(x)
    assert torch.equal(fast, snake(x, layer.alpha.detach()))
    assert torch.equal(snake_inference(x, layer.alpha.detach()), fast)
    assert torch.equal(x, before)  # the input is not overwritten
    with torch.inference_mode():
        assert torch.equal(layer(x), fast)
    slow = layer(x)  # grad mode: the autograd path, same values
    assert slow.requires_grad and torch.equal(slow.detach(), fast)
    slow.sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs().sum() > 0


def test_excerpt_dataset_keeps_a_bounded_cache_of_decoded_files(tmp_path, monkeypatch):
    import soundfile

    import umt.training.dac as dac_training  # where the dataset looks load_audio up
    from umt.training.dac import AudioExcerptDataset

    t = np.arange(4410) / 44100
    files = []
    for index in range(4):
        files.append(tmp_path / f"tone{index}.wav")
        soundfile.write(
            files[-1], (0.3 * np.sin(2 * np.pi * (200 + 100 * index) * t)).astype(np.float32), 44100
        )
    loads = []
    load_audio = dac_training.load_audio
    monkeypatch.setattr(dac_training, "load_audio", lambda *a: loads.append(a[0]) or load_audio(*a))
    bounded = AudioExcerptDataset(files, duration=0.01, length=40, seed=1, cache_files=2)
    uncached = AudioExcerptDataset(files, duration=0.01, length=40, seed=1, cache_files=0)
    excerpts = []
    for item in range(len(bounded)):
        excerpts.append(bounded[item])
        assert len(bounded._cache) <= 2
    assert len(files) <= len(loads) < len(bounded)  # cache misses only
    loads.clear()
    for item in range(len(uncached)):
        assert torch.equal(uncached[item], excerpts[item])  # the cache never changes what is drawn
    assert not uncached._cache and len(loads) == len(uncached)
    loads.clear()
    for item in (0, 0, 0):
        bounded[item]
    assert len(loads) <= 1  # a recently used file is not decoded again


def test_code_restart_reseeds_exactly_the_unused_codes_from_batch_latents():
    from omegaconf import OmegaConf

    from umt.training.dac import DACTrainingModule

    config = OmegaConf.to_container(OmegaConf.load(CONF / "dac_tiny.yaml"))
    config["code_restart"] = {"every": 1}
    torch.manual_seed(0)
    module = DACTrainingModule(config)
    n_codebooks, size = module.code_usage.shape
    codes = torch.zeros(2, n_codebooks, 5, dtype=torch.long)
    codes[:, :, 1] = 3  # only codes 0 and 3 are chosen
    dims = [q.codebook_dim for q in module.generator.quantizer.quantizers]
    latents = torch.randn(2, sum(dims), 5)
    before = [q.codebook.weight.detach().clone() for q in module.generator.quantizer.quantizers]
    module._restart_unused_codes(codes, latents)
    offset = 0
    for quantizer, old, dim in zip(module.generator.quantizer.quantizers, before, dims):
        new = quantizer.codebook.weight.detach()
        assert torch.equal(new[[0, 3]], old[[0, 3]])  # used codes are kept
        candidates = latents[:, offset : offset + dim].transpose(1, 2).reshape(-1, dim)
        offset += dim
        for row in new[[i for i in range(size) if i not in (0, 3)]]:  # each unused one is a latent
            assert (candidates - row).abs().amax(dim=1).min() < 1e-6
    assert torch.count_nonzero(module.code_usage) == 0  # counting starts anew
    assert "code_usage" in module.state_dict()  # so a resumed run keeps counting where it was


def test_training_without_critics_steps_the_generator_only(tmp_path):
    """``adversarial: false``: mel and VQ losses alone; the critics stay untouched and Lightning
    still counts two optimizer steps an iteration (so max_steps and checkpoints mean the same)."""
    lightning = pytest.importorskip("lightning")
    from omegaconf import OmegaConf

    from umt.training.dac import DACTrainingModule

    config = OmegaConf.load(CONF / "dac_tiny.yaml")
    config.adversarial = False
    torch.manual_seed(0)
    module = DACTrainingModule(config)
    generator_before = copy.deepcopy(module.generator.state_dict())
    critic_before = copy.deepcopy(module.discriminator.state_dict())
    t = torch.arange(2205) / 44100
    data = [(0.5 * torch.sin(2 * torch.pi * f * t))[None] for f in (220, 330, 440, 550)]
    trainer = lightning.Trainer(
        max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    assert trainer.global_step == 4  # two iterations
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/mel/loss"]) and "train/adv/gen_loss" not in metrics
    assert any(not torch.equal(v, generator_before[k]) for k, v in module.generator.state_dict().items())
    assert all(torch.equal(v, critic_before[k]) for k, v in module.discriminator.state_dict().items())


def test_excerpts_keep_their_recorded_level_without_a_peak(tmp_path):
    """``data.peak: null``: a codec that will tokenize audio at its files' level trains at it."""
    import soundfile

    from umt.training.dac import AudioExcerptDataset

    t = np.arange(22050) / 22050
    soundfile.write(tmp_path / "a.wav", (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 22050)
    dataset = AudioExcerptDataset([tmp_path / "a.wav"], duration=0.1, length=3, seed=3, peak=None)
    assert all(abs(float(dataset[i].abs().max()) - 0.1) < 1e-3 for i in range(3))
