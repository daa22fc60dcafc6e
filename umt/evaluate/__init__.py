"""The paper's benchmarks as one suite (``umt eval TASK``): test items from manifests
(:mod:`~umt.evaluate.items`), per-item scores of each task (:mod:`~umt.evaluate.tasks`), a batched,
cached, resumable run (:mod:`~umt.evaluate.run`) and paper-style tables (:mod:`~umt.evaluate.report`).
The metrics themselves are in :mod:`umt.metrics`."""
