"""Inference: an exported model folder -> translations of score images, audio, MIDI and MusicXML.

:class:`TranslationPipeline` wraps a :class:`~umt.models.translator.Translator` restored by
:func:`umt.pretrained.from_pretrained` with the tokenizers stored in (or given for) its folder.
Sources are framed exactly as training frames them (:func:`umt.data.pipeline.collate`: the
modality's SOS row, the content rows, its EOS row; PAD to the right), translated in batches
(inputs sorted by length, batched, order restored) and decoded per target modality.

Units. The model translates *units* of the size it was trained on; inputs are cut into them and the
outputs put back together:

* score images: one unit per system (a page is split into systems by
  :func:`umt.data.systems.split_systems`, a PDF into pages first);
* audio: one unit per ``window_seconds`` window (20 s, 1723 audio token rows at 44.1 kHz / hop 512);
  transcriptions of consecutive windows are stitched by the MIDI decoder (tie sections), generated
  audio is concatenated;
* MIDI: one unit per 20 s segment of :func:`umt.tokenizers.midi.encode_notes` (each segment's rows
  end with the segment's EOS id, as the baked shards hold them);
* MusicXML / LMX: one unit per system (:func:`umt.tokenizers.lmx.linearize_systems`), a system
  longer than the model's source length cut at measure boundaries.

Sampling is deterministic for a given ``seed`` and batch size (one ``torch.Generator`` drives the
whole run); greedy decoding (``temperature == 0``) gives the same outputs for any batch size.

The file-level runner :func:`translate_files` (used by ``umt translate`` and ``infer.py``) reads
the inputs, reports a bad input as one line and goes on with the others, and writes each input's
outputs atomically once everything for it has succeeded.
"""

from __future__ import annotations

from umt.inference.files import TranslateSummary, file_tasks, output_stems, translate_files
from umt.inference.generation import Generated, GenerationConfig, select_device
from umt.inference.inputs import (
    load_systems,
    musicxml_to_notes,
    notes_from_pretty_midi,
    read_lmx_systems,
    split_measures,
    stack_images,
    to_gray,
)
from umt.inference.modality_files import midi_writer, png_writer, score_files, text_writer, wav_writer
from umt.inference.pipeline import CascadeResult, TranslationPipeline
from umt.modalities.windows import WINDOW_SECONDS

__all__ = [
    "WINDOW_SECONDS",
    "CascadeResult",
    "Generated",
    "GenerationConfig",
    "TranslateSummary",
    "TranslationPipeline",
    "file_tasks",
    "load_systems",
    "midi_writer",
    "musicxml_to_notes",
    "notes_from_pretty_midi",
    "output_stems",
    "png_writer",
    "read_lmx_systems",
    "score_files",
    "select_device",
    "split_measures",
    "stack_images",
    "text_writer",
    "to_gray",
    "translate_files",
    "wav_writer",
]
