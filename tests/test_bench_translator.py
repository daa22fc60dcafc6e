"""The translator speed benchmark's timing, FLOP / byte counts and summary (figures are made up)."""

from __future__ import annotations

import pytest
import torch

from umt.bench import translator as bench
from umt.modalities import PAPER_MODALITIES
from umt.models.translator import Translator, TranslatorConfig
from umt.vocab import PAD_ID, default_vocabulary


def test_results_compare_ratio_with_the_goal_of_their_measure() -> None:
    results = [
        bench.Result("tiny", "train", "midi", "rows/s", ours=260.0, peer=200.0),
        bench.Result("tiny", "decode", "midi", "steps/s", ours=399.0, peer=200.0),
        bench.Result("tiny", "decode", "audio", "steps/s", ours=400.0, peer=200.0),
    ]
    assert [r.ratio for r in results] == pytest.approx([1.3, 1.995, 2.0])
    assert [r.met for r in results] == [True, False, True]
    table = bench.summary_table(results).splitlines()
    assert "ratio" in table[0] and "goal" in table[0] and "met" in table[0]
    assert table[1].split()[-3:] == ["1.30x", "1.3x", "yes"]
    assert table[2].split()[-3:] == ["2.00x", "2.0x", "NO"]  # 1.995 rounds up but misses the goal
    assert table[3].endswith("yes")
    assert table[-1] == "goals met: 2/3"


def test_interleaved_medians_alternate_the_order_and_take_the_median() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = bench.interleaved_medians(fns, calls=2, repeats=3, device=torch.device("cpu"))
    # One warm-up call each, then rounds a a b b | b b a a | a a b b.
    assert "".join(calls) == "ab" + "aabb" + "bbaa" + "aabb"
    assert set(times) == {"a", "b"}
    assert all(seconds > 0 and spread >= 0 for seconds, spread in times.values())


def test_benchmark_runs_on_a_small_workload(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("x_transformers")
    threads = torch.get_num_threads()
    small = ["--batch", "1", "--source-len", "8", "--target-len", "6", "--train-steps", "1"]
    try:
        bench.run(["--sizes", "tiny", *small, "--decode-steps", "2", "--repeats", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "cpu, 1 torch threads, fp32" in out
    assert "AdamW fused" in out  # fused AdamW runs on CPU float32 parameters
    table = out[: out.index("summary")].splitlines()
    for label in (
        "train GFLOP/s audio→midi",
        "decode weight GB/s audio→midi",
        "train GFLOP/s audio→audio",
        "decode weight GB/s audio→audio",
    ):
        (line,) = [line for line in table if line.startswith(f"tiny   {label} ")]
        ours, peer, ratio = line[len(f"tiny   {label}") :].split()
        assert float(ours) > 0 and float(peer) > 0
        assert float(ratio[:-1]) == pytest.approx(float(ours) / float(peer), abs=0.02)
    summary = out[out.index("summary") : out.index("training arithmetic")].splitlines()
    assert len([line for line in summary if line.startswith("tiny ")]) == 4
    assert summary[-2].startswith("goals met: ")
    # training against the matmul peak of the model's shapes, measured in the same run
    peaks = [line.split() for line in out[out.index("training arithmetic") :].splitlines()[2:]]
    assert [p[:2] for p in peaks] == [["tiny", "audio→midi"], ["tiny", "audio→audio"]]
    assert all(0 < float(p[2].rstrip("%")) < 100 for p in peaks)


def _linear(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def test_our_split_counts_encoder_against_source_rows_and_slots_against_target_rows() -> None:
    vocab = default_vocabulary()
    config = TranslatorConfig.tiny()
    d, ff = config.d_model, config.ff_dim
    norm = 2 * d
    self_attn = _linear(d, 3 * d) + _linear(d, d)
    feed_forward = _linear(d, ff) + _linear(ff, d)
    encoder_layer = 2 * norm + self_attn + feed_forward
    cross_kv = _linear(d, 2 * d)  # applied to the encoder output, once per source row
    decoder_layer = 3 * norm + self_attn + 2 * _linear(d, d) + feed_forward  # query and out; no K/V
    source = config.encoder_layers * encoder_layer + norm + config.decoder_layers * cross_kv
    decoder = config.decoder_layers * decoder_layer + norm
    subdecoder = config.subdecoder_layers * encoder_layer + norm  # the slot embedding does no FLOPs
    allowed = {m: vocab.allowed_mask(m).sum(-1).tolist() for m in ("midi", "audio")}

    model = Translator(config, vocab)
    midi = bench.ours_matmul_parameters(model, "midi")  # one slot: codebook 0
    audio = bench.ours_matmul_parameters(model, "audio")  # all K slots
    assert midi.source == audio.source == source
    assert midi.target == decoder + subdecoder + allowed["midi"][0] * (d + 1)
    assert audio.target == decoder + vocab.num_codebooks * subdecoder + sum(allowed["audio"]) * (d + 1)
    # Nothing counted twice or missed: with all slots, source + target = every non-embedding
    # parameter except the head rows no slot uses and K - 1 copies of the sub-decoder.
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if _not_embedding(model, name))
    head_unused = (vocab.size - sum(allowed["audio"])) * (d + 1)
    assert audio.source + audio.target == (
        non_embedding - head_unused + (vocab.num_codebooks - 1) * subdecoder
    )


def _not_embedding(model: torch.nn.Module, name: str) -> bool:
    module = model.get_submodule(name.rpartition(".")[0])
    return not isinstance(module, torch.nn.Embedding)


def _tiny_peer(**overrides: object) -> bench.PeerTranslator:
    pytest.importorskip("x_transformers")
    torch.manual_seed(0)
    workload = bench.Workload(batch=2, source_len=8, target_len=6, train_steps=1, decode_steps=4)
    config = TranslatorConfig.tiny(**overrides)
    return bench._peer(config, default_vocabulary(), workload, torch.device("cpu"))


def test_peer_is_x_transformers_with_a_sub_decoder_over_the_used_slots() -> None:
    import x_transformers

    vocab = default_vocabulary()
    peer = _tiny_peer()
    assert isinstance(peer.core, x_transformers.XTransformer)
    assert isinstance(peer.slot_decoder, x_transformers.Decoder)
    assert peer.decoder.to_logits is None  # the full-vocabulary `projection` is the output head
    width = TranslatorConfig.tiny().d_model
    assert (peer.projection.in_features, peer.projection.out_features) == (width, vocab.size)
    assert peer.allowed.shape == (len(PAPER_MODALITIES), vocab.num_codebooks, vocab.size)
    used = dict(zip(PAPER_MODALITIES, peer.used_slots))
    assert used["midi"] == 1 and used["audio"] == vocab.num_codebooks
    for wrapper in (peer.core.encoder, peer.decoder):  # PAD rows add nothing to sum_embeds
        assert not wrapper.token_emb.emb.weight[PAD_ID].any()


def test_peer_split_counts_slot_decoder_and_whole_vocabulary_head_per_used_slot() -> None:
    vocab = default_vocabulary()
    config = TranslatorConfig.tiny()
    peer = _tiny_peer()
    d = inner = config.d_model  # attention as wide as the model, like ours
    cross_kv = config.decoder_layers * 2 * _linear(d, inner, bias=False)
    encoder = sum(p.numel() for p in peer.core.encoder.attn_layers.parameters())
    decoder = sum(p.numel() for p in peer.decoder.attn_layers.parameters())
    slot = sum(p.numel() for p in peer.slot_decoder.parameters()) + _linear(d, vocab.size)
    midi = bench.peer_matmul_parameters(peer, "midi")
    audio = bench.peer_matmul_parameters(peer, "audio")
    assert midi.source == audio.source == encoder + cross_kv
    assert midi.target == decoder - cross_kv + slot
    assert audio.target == decoder - cross_kv + vocab.num_codebooks * slot
    # Nothing missed: with one slot, source + target = every non-embedding parameter.
    non_embedding = sum(p.numel() for name, p in peer.named_parameters() if _not_embedding(peer, name))
    assert midi.source + midi.target == non_embedding


def test_peer_loss_is_a_finite_scalar_that_trains_the_sub_decoder() -> None:
    peer = _tiny_peer()
    vocab = default_vocabulary()
    workload = bench.Workload(batch=2, source_len=8, target_len=6, train_steps=1, decode_steps=4)
    for target in bench.TARGETS:
        peer.zero_grad(set_to_none=True)
        batch = bench._inputs(vocab, workload, torch.device("cpu"), target)
        loss = peer.loss(batch)
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
        for module in (peer.slot_decoder, peer.projection, peer.core.encoder.attn_layers):
            grads = [p.grad for p in module.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
        used = peer.used_slots[PAPER_MODALITIES.index(target)]
        assert bool(peer.slot_positions.weight.grad[:used].abs().sum(-1).gt(0).all())
        assert not peer.slot_positions.weight.grad[used:].any()  # unused slots do not run


def test_x_transformers_slot_cache_gives_the_uncached_outputs() -> None:
    """With a cache the slot decoder's attention layers run only the new (last) slot."""
    peer = _tiny_peer().eval()
    slots = torch.randn(3, default_vocabulary().num_codebooks, TranslatorConfig.tiny().d_model)
    with torch.no_grad():
        full = peer.slot_decoder(slots)
        cache, cached = None, []
        for k in range(slots.shape[1]):
            out, cache = peer.slot_decoder(slots[:, k : k + 1], cache=cache, return_hiddens=True)
            cached.append(out[:, -1])
    torch.testing.assert_close(torch.stack(cached, 1), full, rtol=1e-5, atol=1e-5)


def _uncached_generate(
    peer: bench.PeerTranslator, src: torch.Tensor, src_mask: torch.Tensor, target: str, steps: int
) -> torch.Tensor:
    """Greedy decoding that recomputes the whole prefix and every slot from scratch each time."""
    modality = PAPER_MODALITIES.index(target)
    emb = peer.decoder.token_emb
    enc = peer.encode(src, src_mask)
    rows = torch.full((src.shape[0], steps + 1, peer.num_codebooks), PAD_ID, dtype=torch.long)
    rows[:, 0, 0] = default_vocabulary().sos(target)
    for step in range(steps):
        prefix = rows[:, : step + 1]
        hidden = peer.decoder(
            prefix[..., 0],
            context=enc,
            context_mask=src_mask,
            sum_embeds=sum(emb(prefix[..., k]) for k in range(1, peer.num_codebooks)),
            return_embeddings=True,
        )[:, -1]
        for k in range(peer.used_slots[modality]):
            slots = [hidden] + [hidden + emb(rows[:, step + 1, j]) for j in range(k)]
            states = peer.slot_decoder(torch.stack(slots, 1) + peer.slot_positions.weight[: k + 1])
            logits = peer.projection(states[:, -1])
            logits[:, ~peer.allowed[modality, k]] = float("-inf")
            rows[:, step + 1, k] = logits.argmax(-1)
    return rows


@pytest.mark.parametrize("target", bench.TARGETS)
def test_peer_cached_greedy_decoding_matches_an_uncached_recomputation(target: str) -> None:
    peer = _tiny_peer().eval()
    vocab = default_vocabulary()
    workload = bench.Workload(batch=2, source_len=8, target_len=6, train_steps=1, decode_steps=4)
    batch = bench._inputs(vocab, workload, torch.device("cpu"), target)
    src_mask = batch["src_mask"].clone()
    src_mask[1, 5:] = False  # a padded source: the cached cross-attention must keep the mask
    lengths: dict[str, list[int]] = {"decoder": [], "slots": []}  # positions each call runs
    for name, layers in (("decoder", peer.decoder.attn_layers), ("slots", peer.slot_decoder)):
        layers.final_norm.register_forward_hook(
            lambda _, __, out, name=name: lengths[name].append(out.shape[1])
        )
    with torch.no_grad():
        cached = peer.generate(batch["src"], src_mask, target, steps=5)
        assert lengths["decoder"] == [1] * 5  # the prefix goes in, the cache makes it the last row only
        assert lengths["slots"] == [1] * 5 * peer.used_slots[PAPER_MODALITIES.index(target)]
        reference = _uncached_generate(peer, batch["src"], src_mask, target, steps=5)
    assert cached.shape == (2, 6, vocab.num_codebooks)
    assert torch.equal(cached, reference)
    modality = PAPER_MODALITIES.index(target)
    used = peer.used_slots[modality]
    assert not cached[:, 1:, used:].any()  # codebooks the target does not use stay PAD
    for k in range(used):
        assert bool(peer.allowed[modality, k, cached[:, 1:, k]].all())


def test_training_flops_and_decoding_bytes_from_the_split() -> None:
    split = bench.MatmulParameters(source=1_000, target=3_000)
    assert split.train_flops(source_rows=16, target_rows=8) == 6 * (1_000 * 16 + 3_000 * 8)
    assert split.step_bytes("fp32") == 12_000
    assert split.step_bytes("bf16") == 6_000


def test_fused_adamw_is_probed_per_device_and_dtype() -> None:
    from umt.utils.optim import fused_adamw_supported

    assert fused_adamw_supported([torch.nn.Parameter(torch.zeros(3))])
    assert fused_adamw_supported([])
    # No fused kernel for the meta device: both models then fall back to the default AdamW.
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert not fused_adamw_supported([torch.nn.Parameter(torch.zeros(3)), meta])
    model = torch.nn.Linear(2, 2)
    assert bench._adamw(model, fused=True).defaults["fused"] is True
    assert not bench._adamw(model, fused=False).defaults["fused"]


def test_peer_attention_has_our_width_at_every_size() -> None:
    """x-transformers defaults to 64 dims per head; the peer must get d_model / heads like ours."""
    pytest.importorskip("x_transformers")
    for config in (TranslatorConfig.tiny(), TranslatorConfig(d_model=96, n_heads=2, ff_dim=192)):
        workload = bench.Workload(batch=1, source_len=8, target_len=8, train_steps=1, decode_steps=2)
        peer = bench._peer(config, default_vocabulary(), workload, torch.device("cpu"))
        widths = {
            module.out_features
            for name, module in peer.named_modules()
            if name.endswith(("to_q", "to_k", "to_v"))
        }
        assert widths == {config.d_model}


@pytest.mark.parametrize("target", ["midi", "audio"])
def test_peer_applies_dropout_where_ours_does(target: str) -> None:
    """Equivalent models drop out as often: embeddings, attention weights, feed-forward inner and
    branch outputs (U-MusT adds the last to x-transformers; so does the peer)."""
    pytest.importorskip("x_transformers")
    from torch.profiler import ProfilerActivity, profile

    vocab = default_vocabulary()
    workload = bench.Workload(batch=2, source_len=16, target_len=8, train_steps=1, decode_steps=2)
    ours, config = bench._ours("tiny", vocab, torch.device("cpu"))
    peer = bench._peer(config, vocab, workload, torch.device("cpu"))
    batch = bench._inputs(vocab, workload, torch.device("cpu"), target)

    def dropout_calls(compute) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            compute()
        return sum(e.count for e in prof.key_averages() if e.key == "aten::bernoulli_")

    ours_calls = dropout_calls(lambda: ours.train().loss(batch))
    assert ours_calls > 0
    assert dropout_calls(lambda: peer.train().loss(batch)) == ours_calls


def test_benchmark_decodes_with_the_weights_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("x_transformers")
    threads = torch.get_num_threads()
    small = ["--batch", "1", "--source-len", "8", "--target-len", "6", "--train-steps", "1"]
    try:
        options = ["--decode-steps", "2", "--repeats", "1", "--threads", "1", "--decode-dtype", "int8"]
        bench.run(["--sizes", "tiny", *small, *options])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "umt decodes with int8 weights" in out
    assert len([line for line in out.splitlines() if line.startswith("tiny   decode steps/s")]) == 4


def test_matmul_shapes_are_each_linear_forward_and_both_backward_products() -> None:
    from umt.bench.translator import _ours, matmul_shapes

    model, config = _ours("tiny", default_vocabulary(), torch.device("cpu"))
    d, ff = config.d_model, config.ff_dim
    shapes = matmul_shapes(model, 40, 30, "audio")
    # the encoder's feed-forward multiplies the source rows, the decoder's the target rows
    assert shapes[40, d, ff] >= config.encoder_layers and shapes[ff, 40, d] >= config.encoder_layers
    assert shapes[30, d, ff] >= config.decoder_layers and shapes[30, ff, d] >= config.decoder_layers
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "head"]
    slots = model.vocab.modality_codebooks("audio")
    sub = sum(isinstance(m, torch.nn.Linear) for m in model.subdecoder.modules())
    assert sum(shapes.values()) == 3 * (len(linears) + (slots - 1) * sub)
