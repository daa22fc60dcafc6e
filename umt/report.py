"""The demo's self-contained HTML report: every image, sound and curve is inlined (base64 / SVG).

It shows the budget used (each stage's wall time, the steps trained, the device, model sizes),
the metrics table, the training curves read from the run's CSV log, and for every held-out
excerpt: the input image, the score the model read from it (rendered with Verovio), the reference
audio next to the cascade's and the direct image-to-audio output, and piano rolls of the reference
MIDI and of the notes the cascade read. Every number comes from the run's own files.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from PIL import Image

from umt.pretrained import read_config
from umt.utils.io import atomic_write_text

REPORT_FILE = "report.html"
REPORT_SAMPLE_RATE = 16000  # audio is embedded at 16 kHz, 16-bit, to keep the page small

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.excerpt { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; margin: 1em 0; }
.row { display: flex; gap: 1.2em; flex-wrap: wrap; align-items: flex-start; }
.lmx { font-family: monospace; font-size: 11px; max-height: 6em; overflow: auto; background: #f8f8f8;
       padding: 4px; }
.note { color: #666; font-size: 90%; } audio { width: 260px; }
img { image-rendering: pixelated; max-width: 100%; border: 1px solid #eee; }
"""


def _png_data_uri(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _wav_data_uri(audio: np.ndarray, sample_rate: int) -> str:
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != REPORT_SAMPLE_RATE:
        gcd = math.gcd(sample_rate, REPORT_SAMPLE_RATE)
        audio = resample_poly(audio, REPORT_SAMPLE_RATE // gcd, sample_rate // gcd).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1, 1), REPORT_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _audio_tag(audio: np.ndarray | None, sample_rate: int, label: str) -> str:
    if audio is None or len(audio) == 0:
        return f'<div><b>{html.escape(label)}</b><br><span class="note">no audio was generated</span></div>'
    seconds = len(audio) / sample_rate
    return (
        f"<div><b>{html.escape(label)}</b> <span class='note'>{seconds:.1f} s</span><br>"
        f'<audio controls src="{_wav_data_uri(audio, sample_rate)}"></audio></div>'
    )


def piano_roll_svg(
    notes: Sequence[Any], seconds: float, title: str, width: int = 420, height: int = 130
) -> str:
    """Notes (``pitch``, ``onset``, ``offset``) as an SVG piano roll over ``[0, seconds]``."""
    pitches = [n.pitch for n in notes] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    seconds = max(seconds, max((n.offset for n in notes), default=0.0), 1e-3)
    row = height / (high - low + 1)
    bars = []
    for n in notes:
        x = n.onset / seconds * width
        w = max(1.0, (n.offset - n.onset) / seconds * width)
        y = (high - n.pitch) * row
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(row, 1.5):.1f}" fill="#3465a4"/>'
        )
    return (
        f"<div><b>{html.escape(title)}</b> "
        f"<span class='note'>{len(notes)} notes, pitches {low + 2}-{high - 2}</span><br>"
        f'<svg width="{width}" height="{height}" style="background:#fafafa;border:1px solid #ddd">'
        + "".join(bars)
        + "</svg></div>"
    )


def read_csv_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """A Lightning CSV log as ``{metric: [(step, value), ...]}`` (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return series
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = row.get("step")
            if not step:
                continue
            for name, value in row.items():
                if name in ("step", "epoch") or value in ("", None):
                    continue
                try:
                    series.setdefault(name, []).append((int(float(step)), float(value)))
                except ValueError:
                    continue
    return series


def curve_svg(
    series: dict[str, list[tuple[int, float]]], title: str, width: int = 500, height: int = 220
) -> str:
    """Line chart of several ``(step, value)`` series, with axis labels, as inline SVG."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return f"<p class='note'>{html.escape(title)}: nothing logged.</p>"
    colors = ["#cc0000", "#3465a4", "#4e9a06", "#f57900", "#75507b", "#555753", "#c4a000"]
    steps = [s for points in series.values() for s, _ in points]
    values = [v for points in series.values() for _, v in points if math.isfinite(v)]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(max(values), min(values) + 1e-6)
    pad = 40

    def xy(step: int, value: float) -> str:
        x = pad + (step - x0) / (x1 - x0) * (width - pad - 10)
        y = 10 + (1 - (value - y0) / (y1 - y0)) * (height - pad - 10)
        return f"{x:.1f},{y:.1f}"

    lines, legend = [], []
    for index, (name, points) in enumerate(sorted(series.items())):
        color = colors[index % len(colors)]
        path = " ".join(xy(s, v) for s, v in points if math.isfinite(v))
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        legend.append(f'<span style="color:{color}">&#9632; {html.escape(name)}</span>')
    axes = (
        f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0}</text>'
        f'<text x="{width - 70}" y="{height - 8}" font-size="11">step {x1}</text>'
        f'<text x="2" y="14" font-size="11">{y1:.3g}</text>'
        f'<text x="2" y="{height - pad + 4}" font-size="11">{y0:.3g}</text>'
    )
    return (
        f"<div><b>{html.escape(title)}</b><br>"
        f'<svg width="{width}" height="{height}" style="background:#fff;border:1px solid #ddd">'
        + axes
        + "".join(lines)
        + "</svg><br>"
        + " ".join(legend)
        + "</div>"
    )


def _image_or_note(image: np.ndarray | None) -> str:
    return "<span class='note'>none</span>" if image is None else f'<img src="{_png_data_uri(image)}">'


def _rendered_score(musicxml: str) -> str:
    if not musicxml:
        return "<span class='note'>no score</span>"
    try:
        from umt.data.render import render_musicxml

        return f'<img src="{_png_data_uri(np.asarray(render_musicxml(musicxml)))}">'
    except Exception as error:  # a malformed prediction: say why instead of failing the report
        return f"<span class='note'>Verovio could not render it ({html.escape(type(error).__name__)})</span>"


def _metric_rows(metrics: dict[str, float]) -> str:
    described = [
        ("excerpts", "held-out excerpts evaluated", "{:.0f}"),
        ("image_round_trip_ink_f1", "image tokenizer: ink F1 of input vs its round trip", "{:.3f}"),
        ("omr_ser", "OMR symbol error rate, % (lower is better)", "{:.1f}"),
        ("omr_ser_no_tuplets", "OMR SER without tuplet tokens, %", "{:.1f}"),
        ("omr_loss_own_image", "OMR: loss of the reference score given its image (nats a token)", "{:.3f}"),
        ("omr_loss_other_image", "OMR: the same given another excerpt's image (no reading: alike)", "{:.3f}"),
        ("omr_repairs_per_excerpt", "LMX tokens dropped or repaired per excerpt", "{:.1f}"),
        ("cascade_onset_f1", "cascade: note onset F1 of the score read (50 ms)", "{:.3f}"),
        ("cascade_readable_scores", "cascade: predicted scores with notes", "{:.0f}"),
        ("cascade_audio_made", "cascade: excerpts with generated audio", "{:.0f}"),
        ("direct_audio_made", "direct image-to-audio: excerpts with generated audio", "{:.0f}"),
        ("mel_distance_silence", "mel distance: silence vs reference (no information)", "{:.3f}"),
        ("mel_distance_tokenizer", "mel distance: reference through the audio tokenizer (floor)", "{:.3f}"),
        ("mel_distance_cascade", "mel distance: cascade audio vs reference", "{:.3f}"),
        ("mel_distance_direct", "mel distance: direct image-to-audio vs reference", "{:.3f}"),
    ]
    rows = []
    for key, text, fmt in described:
        if key in metrics:
            rows.append(
                f"<tr><td>{html.escape(text)}</td><td class='num'>{fmt.format(metrics[key])}</td></tr>"
            )
    return "<table><tr><th>metric</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _budget_rows(context: Any, shard_counts: dict[str, int]) -> str:
    timings = context.timings()
    config = read_config(context.model_dir)
    model = config["model"]
    rows = [
        f"<tr><td>{html.escape(stage)}</td><td class='num'>{seconds:.1f} s</td></tr>"
        for stage, seconds in timings.items()
    ]
    rows.append(f"<tr><th>total</th><th class='num'>{sum(timings.values()):.1f} s</th></tr>")
    s = context.settings
    facts = [
        ("preset", s.preset),
        ("device", context.accelerator()),
        (
            "translator",
            f"{model['encoder_layers']}+{model['decoder_layers']} layers, d {model['d_model']}, "
            f"{model['n_heads']} heads, FF {model['ff_dim']}",
        ),
        ("translator steps", f"{config.get('global_step', 0)} optimizer steps, batch {s.batch_size}"),
        ("image tokenizer steps", str(s.image_tokenizer_steps)),
        ("audio tokenizer steps", str(s.audio_tokenizer_steps)),
        ("training items baked", ", ".join(f"{m} {n}" for m, n in shard_counts.items())),
    ]
    fact_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return (
        "<div class='row'><table><tr><th>stage</th><th>wall time</th></tr>" + "".join(rows) + "</table>"
        "<table><tr><th>setting</th><th>value</th></tr>" + fact_rows + "</table></div>"
    )


def _curves(context: Any) -> str:
    log = read_csv_log(context.run_dir / "logs" / "metrics.csv")
    losses = {k.split("/")[1]: v for k, v in log.items() if k.startswith("task/") and k.endswith("/loss")}
    overall = {"train loss": log.get("train/loss", [])}
    accuracy = {k.split("/")[1]: v for k, v in log.items() if k.startswith("task/") and k.endswith("/acc")}
    # a resumed tokenizer run logs to logs/resume-N/: read them all, in order
    dac_dir = context.tokenizer_runs / "audio" / "logs"
    dac: dict[str, list[tuple[int, float]]] = {}
    for log_file in [dac_dir / "metrics.csv", *sorted(dac_dir.glob("resume-*/metrics.csv"))]:
        for name, points in read_csv_log(log_file).items():
            dac.setdefault(name, []).extend(points)
    parts = [
        curve_svg(overall, "Translator: training loss"),
        curve_svg(losses, "Translator: loss per task (curriculum)"),
        curve_svg(accuracy, "Translator: token accuracy per task"),
        curve_svg({"mel loss": dac.get("train/mel/loss", [])}, "Audio tokenizer (DAC): mel loss"),
    ]
    return "<div class='row'>" + "".join(parts) + "</div>"


def _excerpt_block(result: Any, excerpt: Any, sample_rate: int) -> str:
    with Image.open(excerpt.image) as image:
        source = np.asarray(image.convert("L"))
    seconds = max((n.offset for n in result.reference_notes), default=1.0)
    gold = html.escape(" ".join(result.gold_lmx))
    predicted = html.escape(" ".join(result.predicted_lmx)) or "<i>(nothing)</i>"
    cascade_note = (
        f"<span class='note'>cascade: {html.escape(result.cascade_error)}</span>"
        if result.cascade_error
        else ""
    )
    distances = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.mel_distance.items()))
    return f"""
<div class="excerpt"><h3>{html.escape(result.key)}</h3>
<div class="row"><div><b>input image</b><br><img src="{_png_data_uri(source)}"></div>
<div><b>input through the image tokenizer</b><br>{_image_or_note(result.tokenizer_image)}</div>
<div><b>score read by OMR</b> <span class='note'>{result.repairs} tokens dropped/repaired</span><br>
{_rendered_score(result.musicxml)}</div></div>
<div class="row"><div style="flex:1"><b>gold LMX</b><div class="lmx">{gold}</div></div>
<div style="flex:1"><b>predicted LMX</b><div class="lmx">{predicted}</div></div></div>
<div class="row">{_audio_tag(result.reference_audio, sample_rate, "reference (FluidSynth)")}
{_audio_tag(result.tokenizer_audio, sample_rate, "reference through the audio tokenizer")}
{_audio_tag(result.cascade_audio, sample_rate, "cascade (OMR -> MIDI -> M2A)")}
{_audio_tag(result.direct_audio, sample_rate, "direct image-to-audio")}</div>
<div class="row">{piano_roll_svg(result.reference_notes, seconds, "reference MIDI")}
{piano_roll_svg(result.cascade_notes, seconds, "notes of the score read (cascade)")}</div>
<p class="note">onset F1 {result.onset_f1:.3f}; mel distance to the reference: {distances or "n/a"}
{cascade_note}</p>
</div>"""


def write_report(
    context: Any, evaluation: Any, excerpts: Sequence[Any], sample_rate: int, shard_counts: dict[str, int]
) -> Path:
    """Write ``<out>/report.html`` (atomically) and return its path."""
    blocks = [_excerpt_block(r, e, sample_rate) for r, e in zip(evaluation.excerpts, excerpts)]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in evaluation.seconds.items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>UMT demo report</title><style>{STYLE}</style></head><body>
<h1>UMT demo: score images to audio</h1>
<p>A corpus made offline from music21's scores and generated piano pieces; small image (RQ-VAE) and
audio (DAC) tokenizers and an image-to-audio-direction Translator trained with the curriculum OMR
&rarr; + MIDI-to-audio &rarr; + image-to-audio; evaluated on held-out systems (pieces never seen in
training). Every figure below was measured in this run (settings in <code>demo.json</code>, metrics
in <code>eval/metrics.json</code>).</p>
<h2>Budget used</h2>{_budget_rows(context, shard_counts)}
<h2>Metrics</h2>{_metric_rows(evaluation.metrics)}<p class="note">evaluation time: {html.escape(seconds)}.
OMR was scored by <code>umt eval omr</code> (its files in <code>eval/omr/</code>); the same command
scores this model on any prepared test set.</p>
<h2>Training curves</h2>{_curves(context)}
<h2>Held-out excerpts</h2>{"".join(blocks)}
</body></html>
"""
    path = context.out / REPORT_FILE
    atomic_write_text(path, page)
    return path
