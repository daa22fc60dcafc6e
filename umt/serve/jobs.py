"""One model, one worker: jobs wait in a bounded queue and run one at a time.

A job that would make the queue longer than ``depth`` is refused at once (:class:`Busy`: the page
says "busy, try again") rather than held in memory. A job reports its progress (units done of
units to do); cancelling a queued job drops it, and a running one stops at its next unit
(:class:`Cancelled` is raised from its progress callback). Finished jobs are kept for
``keep`` more jobs, then their folders are deleted.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Busy(Exception):
    """The queue is full."""


class Cancelled(Exception):
    """Raised inside a running job once it was cancelled."""


@dataclass
class Job:
    id: str
    folder: Path
    run: Callable[[Job], dict[str, Any]]
    state: str = "queued"
    """queued, running, done, failed or cancelled."""
    done: int = 0
    total: int = 0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False

    def progress(self, done: int | None = None, total: int | None = None) -> None:
        """Record progress; raises :class:`Cancelled` once the job was cancelled."""
        if total is not None:
            self.total = total
        if done is not None:
            self.done = done
        if self.cancel_requested:
            raise Cancelled

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "error": self.error,
            "result": self.result if self.state == "done" else {},
        }


class JobQueue:
    def __init__(self, root: Path, depth: int = 4, keep: int = 32) -> None:
        self.root, self.depth, self.keep = root, depth, keep
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.waiting: deque[Job] = deque()
        self.lock = threading.Condition()
        self.worker = threading.Thread(target=self._work, name="umt-serve-worker", daemon=True)
        self.worker.start()

    def submit(self, prepare: Callable[[Path], Callable[[Job], dict[str, Any]]]) -> Job:
        """Queue a job; ``prepare(folder)`` stores its input in the job's own folder and returns
        what the worker runs. Raises :class:`Busy` when ``depth`` jobs are already waiting."""
        with self.lock:
            if len(self.waiting) >= self.depth:
                raise Busy
            job_id = uuid.uuid4().hex
            folder = self.root / job_id
            folder.mkdir(parents=True)
        try:
            run = prepare(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(job_id, folder, run)
        with self.lock:
            self.jobs[job_id] = job
            self.waiting.append(job)
            self.lock.notify()
            self._forget_old()
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job.cancel_requested = True
            if job.state == "queued":
                self.waiting.remove(job)
                job.state = "cancelled"
                shutil.rmtree(job.folder, ignore_errors=True)
            return job

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.waiting:
                    self.lock.wait()
                job = self.waiting.popleft()
                job.state = "running"
            try:
                result = job.run(job)
            except Cancelled:
                job.state = "cancelled"
                shutil.rmtree(job.folder, ignore_errors=True)
            except Exception as error:  # the job's failure is its page's message; the server goes on
                # a user's mistake says what is wrong, not where the server stored the upload
                message = getattr(error, "problem", None) or str(error)
                job.error = " ".join(message.split()) or type(error).__name__
                job.state = "failed"
            else:
                job.result, job.state = result, "done"

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed", "cancelled")]
        for job in finished[: max(0, len(finished) - self.keep)]:
            shutil.rmtree(job.folder, ignore_errors=True)
            del self.jobs[job.id]
