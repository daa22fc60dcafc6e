"""Test-session settings.

Under pytest-xdist (``make test`` runs ``-n 2`` on 2 cores) each worker gets one torch thread:
two workers with torch's default thread count each would oversubscribe the cores, which makes the
many small tensor operations of these tests tens of times slower.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # subprocesses started by tests inherit it
    import torch

    torch.set_num_threads(1)
