"""Tests of the unified translator model (tiny sizes, tiny vocabulary)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from umt.modalities import PAPER_MODALITIES
from umt.models.positions import image_positions
from umt.models.translator import Translator, TranslatorConfig, sample_logits
from umt.vocab import PAD_ID, VocabConfig, Vocabulary

VOCAB = Vocabulary(
    VocabConfig(image_codebook_size=16, audio_codebook_size=16, max_image_height=4, midi_max_shift=10)
)
K = VOCAB.num_codebooks
IMAGE, AUDIO, LMX, MIDI = (PAPER_MODALITIES.index(m) for m in PAPER_MODALITIES)


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> Translator:
    torch.manual_seed(seed)
    overrides.setdefault("dropout", 0.0)
    model = Translator(TranslatorConfig.tiny(**overrides), VOCAB).to(dtype)
    return model


def lmx_rows(values: list[int]) -> torch.Tensor:
    """SOS, LMX tokens ``values`` (indices into the LMX range), EOS -> rows ``[T, K]``."""
    ids = [VOCAB.sos("lmx"), *(VOCAB["lmx/token"].start + v for v in values), VOCAB.eos("lmx")]
    return torch.from_numpy(VOCAB.single_stream_rows(ids))


def audio_rows(frames: int, generator: torch.Generator) -> torch.Tensor:
    codes = torch.randint(0, 16, (frames, VOCAB.modality_codebooks("audio")), generator=generator)
    body = torch.from_numpy(VOCAB.codes_to_ids("audio", codes.numpy()))
    sos = torch.from_numpy(VOCAB.special_row(VOCAB.sos("audio")))[None]
    eos = torch.from_numpy(VOCAB.special_row(VOCAB.eos("audio")))[None]
    return torch.cat([sos, body, eos])


def pad_batch(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows ``[L_i, K]`` to ``[B, L, K]`` with PAD and a mask ``[B, L]``."""
    length = max(len(s) for s in sequences)
    rows = torch.full((len(sequences), length, K), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(sequences), length, dtype=torch.bool)
    for i, seq in enumerate(sequences):
        rows[i, : len(seq)] = seq
        mask[i, : len(seq)] = True
    return rows, mask


def audio_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return pad_batch([audio_rows(n, generator) for n in lengths])


# ----------------------------------------------------------------- config


def test_config_is_plain_dataclass_and_paper_size() -> None:
    paper = TranslatorConfig.paper()
    assert (paper.encoder_layers, paper.decoder_layers, paper.d_model, paper.n_heads, paper.ff_dim) == (
        12,
        12,
        1024,
        16,
        4096,
    )
    assert TranslatorConfig(**asdict(paper)) == paper
    with pytest.raises(ValueError, match="divisible"):
        TranslatorConfig(d_model=30, n_heads=4)


# ------------------------------------------------------------ shapes, masks


def test_forward_shapes_and_logit_masks() -> None:
    model = make_model()
    src, src_mask = audio_batch([5, 3])
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2, 3]), lmx_rows([4])])
    tgt_modality = torch.tensor([LMX, LMX])
    logits = model(src, src_mask, tgt, tgt_mask, tgt_modality)
    assert logits.shape == (2, tgt.shape[1] - 1, K, VOCAB.size)
    allowed = torch.from_numpy(VOCAB.allowed_mask("lmx"))
    assert torch.isneginf(logits[:, :, ~allowed]).all()
    assert torch.isfinite(logits[:, :, allowed]).all()
    # Codebooks 1.. of an LMX target only allow PAD.
    assert (logits[:, :, 1:].argmax(-1) == PAD_ID).all()


def test_source_modality_from_sos_matches_explicit() -> None:
    model = make_model().eval()
    src, src_mask = audio_batch([4, 6])
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2]), lmx_rows([3, 4])])
    modality = torch.tensor([LMX, LMX])
    inferred = model(src, src_mask, tgt, tgt_mask, modality)
    explicit = model(src, src_mask, tgt, tgt_mask, modality, src_modality=torch.tensor([AUDIO, AUDIO]))
    torch.testing.assert_close(inferred, explicit)
    bad = src.clone()
    bad[:, 0, 0] = VOCAB.sep
    with pytest.raises(ValueError, match="SOS"):
        model(bad, src_mask, tgt, tgt_mask, modality)


def test_source_padding_does_not_change_outputs() -> None:
    model = make_model(dtype=torch.float64).eval()
    src, src_mask = audio_batch([3, 6])
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2]), lmx_rows([1, 2])])
    modality = torch.tensor([LMX, LMX])
    batched = model(src, src_mask, tgt, tgt_mask, modality)
    alone = model(src[:1, :5], src_mask[:1, :5], tgt[:1], tgt_mask[:1], modality[:1])
    torch.testing.assert_close(batched[:1], alone)


def test_loss_metrics_and_counted_codebooks() -> None:
    model = make_model()
    src, src_mask = audio_batch([4, 5])
    tgt_lmx, _ = pad_batch([lmx_rows([1, 2, 3])])
    tgt_audio = audio_rows(3, torch.Generator().manual_seed(1))
    tgt, tgt_mask = pad_batch([tgt_lmx[0], tgt_audio])
    batch = dict(
        src=src,
        src_mask=src_mask,
        tgt=tgt,
        tgt_mask=tgt_mask,
        src_modality=torch.tensor([AUDIO, AUDIO]),
        tgt_modality=torch.tensor([LMX, AUDIO]),
    )
    loss, metrics = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    expected = {f"loss/cb{k}" for k in range(K)} | {f"acc/cb{k}" for k in range(K)} | {"acc", "acc/row"}
    assert set(metrics) == expected
    # An untrained model is near uniform over the ~16-id audio codebooks, not over all ids.
    assert 0.5 < metrics["loss/cb1"].item() < np.log(16) + 1.5
    loss.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_loss_decreases_on_toy_copy_task() -> None:
    model = make_model(seed=1)
    model.train()
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        seqs = [lmx_rows(torch.randint(0, 8, (5,), generator=generator).tolist()) for _ in range(8)]
        rows, mask = pad_batch(seqs)
        modality = torch.full((8,), LMX)
        loss, _ = model.loss(
            dict(
                src=rows, src_mask=mask, tgt=rows, tgt_mask=mask, src_modality=modality, tgt_modality=modality
            )
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


# --------------------------------------------------------------- positions


def test_image_positions_follow_vertical_flattening() -> None:
    v = VOCAB
    code = v.codebook_range("image", 0).start
    ids = [v.sos("image"), v.height(2), *[code] * 5, v.sep, v.height(3), *[code] * 4, v.eos("image"), PAD_ID]
    rows, cols = image_positions(
        torch.tensor([ids]), v["image/height"].start, v["image/height"].stop, max_rows=4
    )
    special = 4
    # System 1 (H=2): 5 codes -> rows 0,1,0,1,0 in columns 0,0,1,1,2. System 2 (H=3): columns 3,3,3,4.
    assert rows[0].tolist() == [
        special,
        special,
        0,
        1,
        0,
        1,
        0,
        special,
        special,
        0,
        1,
        2,
        0,
        special,
        special,
    ]
    assert cols[0].tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3, 4, 5, 5]


def test_image_source_uses_planar_positions() -> None:
    model = make_model(dtype=torch.float64).eval()
    v = VOCAB
    code = v.codebook_range("image", 0).start
    ids = torch.tensor([[v.sos("image"), v.height(2), code, code + 1, code + 2, v.eos("image")]])
    positions = model.source_positions(ids, torch.tensor([IMAGE]))
    table = model.source_positions
    expected_code_2 = table.image_row.weight[0] + table.image_column.weight[1]  # i=2 -> row 0, column 1
    torch.testing.assert_close(positions[0, 4], expected_code_2)
    # The same ids read as an LMX-like 1-D sequence use the 1-D table instead.
    one_d = model.source_positions(ids, torch.tensor([LMX]))
    torch.testing.assert_close(one_d[0, 4], table.sequence.weight[LMX * table.max_len + 4])


# -------------------------------------------------------------- generation


def generation_inputs(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return audio_batch(lengths, seed=3)


@pytest.mark.parametrize("target", ["lmx", "image", "audio", "midi"])
def test_cached_and_uncached_generation_are_identical(target: str) -> None:
    model = make_model(seed=2, dtype=torch.float64).eval()
    src, src_mask = generation_inputs([5, 3, 4])
    tgt_modality = torch.full((3,), PAPER_MODALITIES.index(target))
    for options in (
        {"temperature": 0.0},
        {"temperature": 1.0},
        {"temperature": 0.8, "top_k": 5, "top_p": 0.9},
    ):
        outputs = []
        for use_cache in (True, False):
            generator = torch.Generator().manual_seed(7)
            outputs.append(
                model.generate(
                    src, src_mask, None, tgt_modality, 12, generator=generator, use_cache=use_cache, **options
                )
            )
        assert torch.equal(outputs[0], outputs[1]), options


def test_batched_generation_matches_one_by_one() -> None:
    model = make_model(seed=4, dtype=torch.float64).eval()
    src, src_mask = generation_inputs([6, 2, 4])
    tgt_modality = torch.tensor([LMX, IMAGE, AUDIO])
    batched = model.generate(src, src_mask, None, tgt_modality, 10, temperature=0.0)
    for i in range(3):
        length = int(src_mask[i].sum())
        alone = model.generate(
            src[i : i + 1, :length],
            src_mask[i : i + 1, :length],
            None,
            tgt_modality[i : i + 1],
            10,
            temperature=0.0,
        )
        got = batched[i, : alone.shape[1]]
        assert torch.equal(got, alone[0])
        assert (batched[i, alone.shape[1] :] == PAD_ID).all()


@pytest.mark.parametrize("target", PAPER_MODALITIES)
def test_generated_ids_are_allowed_for_target(target: str) -> None:
    model = make_model(seed=5).eval()
    src, src_mask = generation_inputs([4, 4])
    tgt_modality = torch.full((2,), PAPER_MODALITIES.index(target))
    out = model.generate(
        src, src_mask, None, tgt_modality, 16, temperature=1.5, generator=torch.Generator().manual_seed(0)
    )
    assert (out[:, 0, 0] == VOCAB.sos(target)).all()
    allowed = torch.from_numpy(VOCAB.allowed_mask(target))
    eos = VOCAB.eos(target)
    for example in out:
        ended = False
        for row in example[1:]:
            if ended:
                assert (row == PAD_ID).all()
                continue
            for k in range(K):
                assert allowed[k, row[k]], (target, k, int(row[k]))
            if target in ("image", "audio"):
                # Codebooks 1.. are PAD exactly on special rows.
                special = VOCAB.is_special(int(row[0]))
                assert bool((row[1:] == PAD_ID).all()) == bool(special)
            ended = int(row[0]) == eos


def test_generation_stops_at_eos() -> None:
    model = make_model(seed=6).eval()
    src, src_mask = generation_inputs([3, 5])
    tgt_modality = torch.tensor([MIDI, MIDI])
    with torch.no_grad():
        model.head.bias[VOCAB.eos("midi")] = 100.0  # make EOS certain
    out = model.generate(
        src, src_mask, None, tgt_modality, 20, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (2, 2, K)
    assert (out[:, 1, 0] == VOCAB.eos("midi")).all()


def test_image_target_generation_with_heights() -> None:
    """Push the model to emit a height token first; the following codes then get planar positions."""
    model = make_model(seed=8, dtype=torch.float64).eval()
    src, src_mask = generation_inputs([4])
    with torch.no_grad():
        model.head.bias[VOCAB.height(2)] = 50.0
        model.head.bias[VOCAB.eos("image")] = -50.0
    out = model.generate(src, src_mask, None, torch.tensor([IMAGE]), 8, temperature=0.0)
    assert out[0, 1, 0] == VOCAB.height(2)
    cached = model.generate(src, src_mask, None, torch.tensor([IMAGE]), 8, temperature=0.0, use_cache=False)
    assert torch.equal(out, cached)


MIXED_TARGETS = torch.tensor([LMX, IMAGE, AUDIO, MIDI, AUDIO])


def test_greedy_generation_is_the_argmax_of_teacher_forced_logits() -> None:
    """The fast greedy path (one-position decoder steps, argmax over the allowed ids of each slot)
    picks, row by row and codebook by codebook, the argmax of :meth:`forward`'s masked logits on its
    own output, with codebooks 1.. of image/audio special rows PAD."""
    model = make_model(seed=9, dtype=torch.float64).eval()
    src, src_mask = generation_inputs([6, 2, 4, 5, 3])
    out = model.generate(src, src_mask, None, MIXED_TARGETS, 12, temperature=0.0)
    ends = [
        int((example[:, 0] == VOCAB.eos(PAPER_MODALITIES[m])).nonzero()[0]) + 1
        if (example[:, 0] == VOCAB.eos(PAPER_MODALITIES[m])).any()
        else out.shape[1]
        for example, m in zip(out, MIXED_TARGETS.tolist())
    ]
    tgt_mask = torch.arange(out.shape[1])[None] < torch.tensor(ends)[:, None]
    logits = model(src, src_mask, out, tgt_mask, MIXED_TARGETS)  # [B, T-1, K, V]
    special = torch.from_numpy(VOCAB.special_mask)[out[:, 1:, :1]]  # [B, T-1, 1]
    multi_stream = torch.tensor([PAPER_MODALITIES[m] in ("image", "audio") for m in MIXED_TARGETS.tolist()])
    is_pad = torch.arange(VOCAB.size) == PAD_ID
    barred = torch.where(special[..., None], ~is_pad, is_pad)  # [B, T-1, 1, V]
    barred = barred & multi_stream[:, None, None, None] & (torch.arange(K) > 0)[None, None, :, None]
    expected = logits.masked_fill(barred, float("-inf")).argmax(-1)  # [B, T-1, K]
    for i, end in enumerate(ends):
        assert torch.equal(out[i, 1:end], expected[i, : end - 1]), PAPER_MODALITIES[int(MIXED_TARGETS[i])]


@pytest.mark.parametrize("targets", [MIXED_TARGETS, torch.full((3,), AUDIO)])
def test_greedy_fast_path_matches_sampling_and_module_paths(targets: torch.Tensor) -> None:
    """Greedy (restricted argmax) equals top-k 1 sampling (full ``[B, V]`` logits), and the eval-mode
    one-position steps equal the module path that training mode takes (dropout 0 here)."""
    model = make_model(seed=10, dtype=torch.float64).eval()
    src, src_mask = generation_inputs([6, 2, 4, 5, 3][: len(targets)])
    greedy = model.generate(src, src_mask, None, targets, 12, temperature=0.0)
    sampled = model.generate(
        src, src_mask, None, targets, 12, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(greedy, sampled)
    module_path = model.train().generate(src, src_mask, None, targets, 12, temperature=0.0)
    assert torch.equal(greedy, module_path)


def test_sample_logits_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_logits(logits, 1.0, top_k=2, generator=generator) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}
    draws = torch.stack([sample_logits(logits, 1.0, top_p=0.6, generator=generator) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}
    assert sample_logits(logits, 0.0).item() == 0
    assert {sample_logits(logits, 1.0, top_p=0.0, generator=generator).item() for _ in range(20)} == {0}


# ----------------------------------------------------- codebook embeddings


def test_init_codebook_embeddings_sets_rows_and_round_trips() -> None:
    model = make_model(seed=9)
    generator = torch.Generator().manual_seed(0)
    vectors = [torch.randn(16, 6, generator=generator) for _ in range(VOCAB.modality_codebooks("image"))]
    model.init_codebook_embeddings("image", vectors)
    assert model.config.image_code_dim == 6
    table = model.codebook_vectors["image"]
    stacked = torch.cat(vectors)
    normalised = (stacked - stacked.mean(0)) / stacked.std()
    first = VOCAB.codebook_range("image", 0).start
    ids = torch.tensor([first, first + 17, first + 63])
    expected = table.project(normalised[[0, 17, 63]])
    torch.testing.assert_close(model.embed_ids(ids), expected)
    # Other ids are untouched by the code table.
    lmx_id = torch.tensor([VOCAB["lmx/token"].start])
    torch.testing.assert_close(model.embed_ids(lmx_id), model.token_embedding(lmx_id))
    # Gradients reach the code vectors and the projection.
    model.embed_ids(ids).sum().backward()
    assert table.vectors.grad is not None and table.vectors.grad.abs().sum() > 0
    # A model built from the stored config loads the weights (the table exists from the config).
    fresh = Translator(TranslatorConfig(**asdict(model.config)), VOCAB)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.embed_ids(ids), model.embed_ids(ids))
    with pytest.raises(ValueError, match="codebooks"):
        model.init_codebook_embeddings("image", vectors[:2])
    with pytest.raises(ValueError, match="no codebooks"):
        model.init_codebook_embeddings("lmx", vectors)


def test_generation_with_codebook_vectors_uses_one_embedding_table() -> None:
    """The table generation gathers from equals :meth:`embed_ids` for every id, and cached,
    uncached and teacher-forced decoding still agree when code vectors are present."""
    model = make_model(seed=11, dtype=torch.float64).eval()
    generator = torch.Generator().manual_seed(1)
    for modality in ("image", "audio"):
        count = VOCAB.modality_codebooks(modality)
        size = VOCAB.codebook_range(modality, 0).size
        vectors = [torch.randn(size, 5, generator=generator, dtype=torch.float64) for _ in range(count)]
        model.init_codebook_embeddings(modality, vectors)
    with torch.no_grad():
        for table in model.codebook_vectors.values():
            table.project.weight.normal_(generator=generator)  # make the code rows matter
    ids = torch.arange(VOCAB.size)
    torch.testing.assert_close(model.embedding_table(), model.embed_ids(ids))
    src, src_mask = generation_inputs([5, 3, 4])
    targets = torch.tensor([AUDIO, IMAGE, AUDIO])
    cached = model.generate(src, src_mask, None, targets, 10, temperature=0.0)
    uncached = model.generate(src, src_mask, None, targets, 10, temperature=0.0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert (cached[:, 1:, 1:] != PAD_ID).any()  # code rows were generated and fed back


def test_loss_equals_cross_entropy_of_forward_logits() -> None:
    """The loss's shortcut (counted logits only) gives what cross-entropy on forward() gives."""
    model = make_model(seed=10, dtype=torch.float64).eval()
    src, src_mask = audio_batch([4, 6, 3])
    generator = torch.Generator().manual_seed(2)
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2, 3, 4]), audio_rows(2, generator), audio_rows(5, generator)])
    tgt_modality = torch.tensor([LMX, AUDIO, AUDIO])
    batch = dict(src=src, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask, tgt_modality=tgt_modality)
    loss, metrics = model.loss(batch)
    logits = model(src, src_mask, tgt, tgt_mask, tgt_modality)
    counted = tgt_mask[:, 1:, None] & model.counted_codebooks[tgt_modality][:, None]
    labels = tgt[:, 1:]
    reference = torch.nn.functional.cross_entropy(logits[counted], labels[counted])
    torch.testing.assert_close(loss, reference)
    for k in range(K):
        in_k = counted[..., k]
        ref_k = torch.nn.functional.cross_entropy(logits[..., k, :][in_k], labels[..., k][in_k])
        torch.testing.assert_close(metrics[f"loss/cb{k}"], ref_k)
        acc_k = (logits[..., k, :][in_k].argmax(-1) == labels[..., k][in_k]).double().mean()
        torch.testing.assert_close(metrics[f"acc/cb{k}"].double(), acc_k)
    # Only the LMX example's codebook 0 and the audio examples count: 5 + 3*4 + 6*4 targets.
    assert int(counted.sum()) == 5 + 12 + 24


def test_single_stream_loss_has_the_gradients_of_forward_cross_entropy() -> None:
    """LMX / MIDI targets use one slot, so the loss looks up no previous codebooks (and leaves no
    dense table gradient to fill for them): every parameter's gradient is still the reference's."""
    model = make_model(seed=11, dtype=torch.float64).eval()
    src, src_mask = audio_batch([4, 6])
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2, 3, 4]), lmx_rows([5, 6])])
    tgt_modality = torch.tensor([LMX, LMX])
    batch = dict(src=src, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask, tgt_modality=tgt_modality)
    model.loss(batch)[0].backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    logits = model(src, src_mask, tgt, tgt_mask, tgt_modality)
    counted = tgt_mask[:, 1:, None] & model.counted_codebooks[tgt_modality][:, None]
    torch.nn.functional.cross_entropy(logits[counted], tgt[:, 1:][counted]).backward()
    reference = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() <= reference.keys() and "token_embedding.weight" in ours
    for name, grad in reference.items():
        torch.testing.assert_close(ours.get(name, torch.zeros_like(grad)), grad, msg=name)


def test_example_average_weighs_every_example_alike() -> None:
    """``average="example"``: the mean over examples of each example's mean cross-entropy, from
    :meth:`forward`'s logits; the short LMX target then weighs as much as a long audio one."""
    model = make_model(seed=12, dtype=torch.float64).eval()
    src, src_mask = audio_batch([4, 6, 3])
    generator = torch.Generator().manual_seed(3)
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2, 3]), audio_rows(2, generator), audio_rows(6, generator)])
    tgt_modality = torch.tensor([LMX, AUDIO, AUDIO])
    batch = dict(src=src, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask, tgt_modality=tgt_modality)
    by_example, _ = model.loss(batch, average="example")
    by_token, _ = model.loss(batch)
    logits = model(src, src_mask, tgt, tgt_mask, tgt_modality)
    counted = tgt_mask[:, 1:, None] & model.counted_codebooks[tgt_modality][:, None]
    labels = tgt[:, 1:]
    means = [
        torch.nn.functional.cross_entropy(logits[i][counted[i]], labels[i][counted[i]]) for i in range(3)
    ]
    torch.testing.assert_close(by_example, torch.stack(means).mean())
    assert not torch.isclose(by_example, by_token)
    by_example.backward()  # a graph to train on
    with pytest.raises(ValueError, match="average"):
        model.loss(batch, average="sentence")


def test_loss_rejects_target_ids_not_allowed_for_the_modality() -> None:
    model = make_model()
    src, src_mask = audio_batch([4])
    tgt, tgt_mask = pad_batch([lmx_rows([1, 2])])
    tgt[0, 1, 0] = VOCAB.codebook_range("audio", 0).start  # an audio code inside an LMX target
    batch = dict(src=src, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask, tgt_modality=torch.tensor([LMX]))
    with pytest.raises(ValueError, match="lmx target holds an id not allowed in codebook 0"):
        model.loss(batch)


# ------------------------------------------------- U-MusT's options (models imported from it)

UMUST = dict(
    head_dim=24,
    subdecoder_head_dim=12,
    separate_embeddings=True,
    decoder_final_norms=2,
    positions="umust",
    source_height_rows=False,
    stop_at_midi_eos=False,
)


def test_umust_options_build_what_they_say() -> None:
    model = make_model(**UMUST)
    first = model.encoder[0].attn
    assert first.qkv.weight.shape == (3 * 2 * 24, 32) and first.out.weight.shape == (32, 2 * 24)
    assert model.decoder[0].cross_attn.kv.weight.shape == (2 * 2 * 24, 32)
    assert model.subdecoder.layers[0].attn.qkv.weight.shape == (3 * 2 * 12, 32)
    assert {"source_embedding.weight", "subdecoder_embedding.weight", "decoder_second_norm.weight"} <= set(
        model.state_dict()
    )
    with pytest.raises(ValueError, match="decoder_final_norms"):
        TranslatorConfig.tiny(decoder_final_norms=3)
    with pytest.raises(ValueError, match="positions"):
        TranslatorConfig.tiny(positions="rope")


@pytest.mark.parametrize("target", ["lmx", "image", "audio", "midi"])
def test_umust_options_keep_cached_batched_and_teacher_forced_paths_equal(target: str) -> None:
    """Every decoding path agrees with the others under the options, as it does without them."""
    model = make_model(seed=2, dtype=torch.float64, **UMUST).eval()
    src, src_mask = generation_inputs([5, 3, 4])
    tgt_modality = torch.full((3,), PAPER_MODALITIES.index(target))
    cached = model.generate(src, src_mask, None, tgt_modality, 10, temperature=0)
    uncached = model.generate(src, src_mask, None, tgt_modality, 10, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    alone = [
        model.generate(
            src[i : i + 1, : int(src_mask[i].sum())],
            src_mask[i : i + 1, : int(src_mask[i].sum())],
            None,
            tgt_modality[:1],
            10,
            temperature=0,
        )
        for i in range(3)
    ]
    for i, out in enumerate(alone):
        assert torch.equal(out[0], cached[i, : out.shape[1]])
    logits = model(src, src_mask, cached, torch.ones(cached.shape[:2], dtype=torch.bool), tgt_modality)
    for b in range(3):  # each generated codebook-0 id is the argmax of the teacher-forced logits
        steps = int((cached[b, 1:, 0] != PAD_ID).sum())
        assert torch.equal(logits[b, :steps, 0].argmax(-1), cached[b, 1 : steps + 1, 0])


def test_separate_tables_are_the_ones_used() -> None:
    model = make_model(dtype=torch.float64, **UMUST).eval()
    src, src_mask = audio_batch([4])
    tgt_modality = torch.tensor([LMX])
    tgt = lmx_rows([1, 2])[None]
    before = model(src, src_mask, tgt, torch.ones(tgt.shape[:2], dtype=torch.bool), tgt_modality)
    with torch.no_grad():
        model.source_embedding.weight.mul_(2.0)
    after = model(src, src_mask, tgt, torch.ones(tgt.shape[:2], dtype=torch.bool), tgt_modality)
    assert not torch.allclose(before, after, equal_nan=True)  # the encoder reads its own table
    with torch.no_grad():
        audio = slice(VOCAB["audio/sos"].start, VOCAB["audio/cb3"].stop)  # the source's ids only
        model.token_embedding.weight[audio].mul_(3.0)
    again = model(src, src_mask, tgt, torch.ones(tgt.shape[:2], dtype=torch.bool), tgt_modality)
    torch.testing.assert_close(after, again, equal_nan=True)  # ... not the decoder's


def test_umust_image_positions() -> None:
    """U-MusT's rules: no position for the first row, codes before a height token, the EOS row and
    what follows it; a height row takes row 0 of the next column; SEP repeats the last code's
    position; a source image's EOS takes row 0 of the next column."""
    from umt.models.positions import umust_image_positions

    v = VOCAB
    code = v.codebook_range("image", 0).start
    ids = [
        v.sos("image"),
        code,
        v.height(2),
        *[code] * 3,
        v.sep,
        v.height(1),
        code,
        v.eos("image"),
        code,
        PAD_ID,
    ]
    args = (torch.tensor([ids]), v["image/height"].start, v["image/height"].stop, 4, v.eos("image"), v.sep)
    rows, cols, null = umust_image_positions(*args, target=True)
    assert null[0].tolist() == [True, True, False, False, False, False, False, False, False, True, True, True]
    live = ~null[0]
    # height(2) -> (0, col 0); codes: rows 0,1,0 in columns 0,0,1; SEP = the last code's (0, 1);
    # height(1) -> (0, 2); its code (0, 2)
    assert rows[0][live].tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert cols[0][live].tolist() == [0, 0, 0, 1, 1, 2, 2]
    source = [v.sos("image"), v.height(2), *[code] * 3, v.eos("image")]
    args = (torch.tensor([source]), *args[1:])
    rows, cols, null = umust_image_positions(*args, target=False)
    assert null[0].tolist() == [True, False, False, False, False, False]
    assert (rows[0, -1].item(), cols[0, -1].item()) == (0, 2)  # EOS: row 0 of the next column


def test_source_height_rows_can_be_left_unattended() -> None:
    """With ``source_height_rows=False`` the height row of a source image changes nothing: giving it
    another value leaves the outputs as they were (its position still sets the others')."""
    model = make_model(dtype=torch.float64, **UMUST).eval()
    v = VOCAB
    code = v.codebook_range("image", 0).start
    codes = [
        [
            code + i,
            v.codebook_range("image", 1).start + i,
            v.codebook_range("image", 2).start,
            v.codebook_range("image", 3).start,
        ]
        for i in range(4)
    ]

    def source(height_id: int) -> torch.Tensor:
        rows = [
            v.special_row(v.sos("image")).tolist(),
            v.special_row(height_id).tolist(),
            *codes,
            v.special_row(v.eos("image")).tolist(),
        ]
        return torch.tensor([rows])

    tgt = lmx_rows([1, 2])[None]
    mask = torch.ones(1, 7, dtype=torch.bool)
    tgt_mask = torch.ones(tgt.shape[:2], dtype=torch.bool)
    first = model(source(v.height(2)), mask, tgt, tgt_mask, torch.tensor([LMX]))
    with torch.no_grad():
        model.source_embedding.weight[v.height(2)] += 5.0  # the height row's own input
    second = model(source(v.height(2)), mask, tgt, tgt_mask, torch.tensor([LMX]))
    torch.testing.assert_close(first, second, equal_nan=True)


def test_midi_outputs_can_go_on_past_eos() -> None:
    model = make_model(seed=3, **UMUST).eval()
    with torch.no_grad():
        model.head.bias[VOCAB.eos("midi")] += 50.0  # EOS wins every step
    src, src_mask = audio_batch([4])
    out = model.generate(src, src_mask, None, torch.tensor([MIDI]), 8, temperature=0)
    assert out.shape[1] == 8 and (out[0, 1:, 0] == VOCAB.eos("midi")).all()
    from dataclasses import replace

    stopping = Translator(replace(model.config, stop_at_midi_eos=True), VOCAB)
    stopping.load_state_dict(model.state_dict())
    assert stopping.eval().generate(src, src_mask, None, torch.tensor([MIDI]), 8, temperature=0).shape[1] == 2


# ------------------------------------------------------------ source columns


def image_source(shapes: list[tuple[int, int]], seed: int = 0) -> torch.Tensor:
    """SOS, systems of random codes of ``(height, width)`` each (vertical flattening), EOS."""
    from umt.tokenizers.image import flatten_systems

    generator = np.random.default_rng(seed)
    grids = [generator.integers(0, 16, (h, w, VOCAB.modality_codebooks("image"))) for h, w in shapes]
    sos = VOCAB.special_row(VOCAB.sos("image"))[None]
    eos = VOCAB.special_row(VOCAB.eos("image"))[None]
    return torch.from_numpy(np.concatenate([sos, flatten_systems(grids, VOCAB), eos]))


def test_source_columns_read_each_code_column_as_one_position() -> None:
    model = make_model(dtype=torch.float64, source_columns=True).eval()
    sources = [
        image_source([(3, 5)]),
        image_source([(2, 4), (4, 3)], seed=1),
        audio_rows(7, torch.Generator()),
    ]
    src, src_mask = pad_batch(sources)
    modality = model.source_modality_of(src)
    rows = model.embed_source_rows(src) + model.source_positions(src[..., 0], modality)
    out, mask = model.read_columns(rows, src[..., 0], src_mask, modality)
    # SOS, height, 5 columns, EOS | SOS, height, 4 columns, SEP, height, 3 columns, EOS | 9 audio rows
    assert mask.sum(1).tolist() == [8, 12, 9]
    slots = torch.zeros(VOCAB.config.max_image_height, rows.shape[-1], dtype=torch.float64)
    slots[:3] = rows[0, 5:8]  # column 1 of the first system: rows 2..4 are column 0
    torch.testing.assert_close(out[0, 3], model.source_column_projection(slots.flatten()))
    slots = torch.zeros_like(slots)
    slots[:4] = rows[1, 12:16]  # the second system's first column, after SEP (10) and its height (11)
    torch.testing.assert_close(out[1, 8], model.source_column_projection(slots.flatten()))
    alone = {0: {0: 0, 1: 1, 7: 17}, 1: {0: 0, 1: 1, 6: 10, 7: 11, 11: 24}, 2: {i: i for i in range(9)}}
    for b, positions in alone.items():  # rows of their own (special rows, audio) pass as they are
        for position, row in positions.items():
            torch.testing.assert_close(out[b, position], rows[b, row])


@pytest.mark.parametrize("target", ["lmx", "audio"])
def test_source_columns_keep_cached_batched_and_teacher_forced_paths_equal(target: str) -> None:
    model = make_model(seed=2, dtype=torch.float64, source_columns=True).eval()
    sources = [image_source([(3, 5)]), image_source([(2, 4), (4, 3)], seed=1), image_source([(4, 2)])]
    src, src_mask = pad_batch(sources)
    tgt_modality = torch.full((3,), PAPER_MODALITIES.index(target))
    cached = model.generate(src, src_mask, None, tgt_modality, 10, temperature=0)
    assert torch.equal(
        cached, model.generate(src, src_mask, None, tgt_modality, 10, temperature=0, use_cache=False)
    )
    for i, source in enumerate(sources):
        alone = model.generate(
            source[None],
            torch.ones(1, len(source), dtype=torch.bool),
            None,
            tgt_modality[:1],
            10,
            temperature=0,
        )
        assert torch.equal(alone[0], cached[i, : alone.shape[1]])
    logits = model(src, src_mask, cached, torch.ones(cached.shape[:2], dtype=torch.bool), tgt_modality)
    for b in range(3):
        steps = int((cached[b, 1:, 0] != PAD_ID).sum())
        assert torch.equal(logits[b, :steps, 0].argmax(-1), cached[b, 1 : steps + 1, 0])


def test_source_columns_need_the_umt_layout_of_systems() -> None:
    with pytest.raises(ValueError, match="source_columns"):
        TranslatorConfig.tiny(source_columns=True, source_systems="umust", separate_embeddings=True)
