"""The translator speed benchmark's timing and summary logic (no real timing: figures are made up)."""

from __future__ import annotations

import pytest
import torch

from umt.bench import translator as bench


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
    summary = out[out.index("summary") :].splitlines()
    assert len([line for line in summary if line.startswith("tiny ")]) == 4
    assert summary[-1].startswith("goals met: ")
