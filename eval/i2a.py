"""Image-to-audio benchmark: direct and cascaded generation (onset F1 of the score read, mel distances).

    python eval/i2a.py --checkpoint MODEL_DIR --corpus CORPUS_DIR [--split test] [--limit N] [--out FILE.json]

The corpus is one built by `umt corpus build`; the work is :mod:`umt.evaluation`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.evaluation import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main("i2a"))
