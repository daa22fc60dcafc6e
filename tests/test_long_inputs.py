"""Long inputs (``python -m umt.bench long-inputs``): a recording of several windows goes through
``translate_files`` in a process of its own that reports its stage times and peak memory; the
bench's inputs are made from a corpus (a recording of the asked length, a PDF of the asked pages)."""

from __future__ import annotations

import _inference_fixtures as fx
import numpy as np
import pretty_midi
import soundfile

from umt.bench import long_inputs


def test_a_recording_of_several_windows_is_translated_in_one_child_process(tmp_path):
    model = fx.make_model_folder(tmp_path)
    wav = fx.save_wav(tmp_path / "long.wav", 45.0)  # three 20 s windows
    report = long_inputs.translate(model, "amt", wav, tmp_path / "out", 2, 16, "int8")
    assert report["failures"] == {}
    assert set(report["seconds"]) == {"read", "generate", "write"}
    assert 50 < report["peak_mib"] < 4096
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "out" / "long.mid"))
    assert midi.get_end_time() <= 45.0 + 1e-6


def test_bench_inputs_have_the_asked_length_and_pages(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "test").mkdir(parents=True)
    records = []
    for index in range(3):
        wav = fx.save_wav(corpus / "test" / f"{index}.wav", 2.0, seed=index)
        png = fx.save_png(fx.render(fx.piano_musicxml(1, index)), corpus / "test" / f"{index}.png")
        records.append(f'{{"key": "{index}", "wav": "test/{wav.name}", "png": "test/{png.name}"}}')
    (corpus / "manifest.jsonl").write_text("\n".join(records) + "\n")
    minutes = long_inputs.make_recording(corpus, 0.25, tmp_path / "rec.wav")
    audio, rate = soundfile.read(str(tmp_path / "rec.wav"))
    assert minutes == 0.25 and len(audio) == 15 * rate and np.abs(audio).max() > 0
    assert long_inputs.make_pdf(corpus, 2, tmp_path / "score.pdf") == 2 * long_inputs.SYSTEMS_PER_PAGE
    from umt.data.systems import read_pdf_pages

    assert len(read_pdf_pages(tmp_path / "score.pdf")) == 2
