"""AMT benchmark: note onset / offset F1 of an exported model's transcriptions on a corpus split.

    python eval/amt.py --checkpoint MODEL_DIR --corpus CORPUS_DIR [--split test] [--limit N] [--out FILE.json]

The corpus is one built by `umt corpus build`; the work is :mod:`umt.evaluation`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.evaluation import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main("amt"))
