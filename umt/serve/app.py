"""``umt serve``'s web app: one page (``static/index.html``) over a small JSON API.

    GET  /                          the page
    GET  /api/info                  the tabs the loaded model has, limits, examples
    POST /api/jobs?tab=T            an upload (multipart field ``file``) or ``example=NAME`` -> job id
    GET  /api/jobs/ID               state, progress, and when done what to show
    POST /api/jobs/ID/cancel        drop a queued job, stop a running one at its next system
    GET  /api/jobs/ID/files/PATH    a file the job wrote (nothing else is ever served)
    GET  /api/examples/NAME         an example input

Uploads are limited in size (counted while they arrive, not taken from a header) and judged by
their bytes (:mod:`umt.serve.uploads`); they are stored under a fixed name in the job's own folder,
which is deleted when the job is forgotten and the whole work folder when the server stops. No
path from a request is ever opened: downloads are looked up among the files the job wrote.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from umt.errors import UserError
from umt.serve.jobs import Busy, JobQueue
from umt.serve.uploads import sniff, stored_suffix
from umt.serve.work import TABS, Models, run_tab

STATIC = Path(__file__).parent / "static"


class TooLarge(Exception):
    pass


def create_app(
    models: Models,
    max_upload_mb: float = 50.0,
    queue_depth: int = 4,
    examples: dict[str, Path] | None = None,
    work_dir: Path | None = None,
):
    """The FastAPI app serving ``models`` (see the module docstring)."""
    from contextlib import asynccontextmanager

    root = Path(work_dir or tempfile.mkdtemp(prefix="umt-serve-"))
    queue = JobQueue(root, depth=queue_depth)
    limit = int(max_upload_mb * 1024 * 1024)
    examples = dict(examples or {})

    @asynccontextmanager
    async def lifespan(app):
        yield
        shutil.rmtree(root, ignore_errors=True)  # uploads and outputs go with the server

    app = FastAPI(title="UMT", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        tabs = [
            {"id": tab, "title": spec["title"], "kinds": list(spec["kinds"]), "runs": models.tab_tasks(tab)}
            for tab, spec in TABS.items()
            if models.tab_tasks(tab)
        ]
        return {
            "tabs": tabs,
            "max_upload_mb": max_upload_mb,
            "examples": {name: sniff(path.read_bytes()[:8192]) for name, path in examples.items()},
        }

    @app.post("/api/jobs")
    async def submit(request: Request, tab: str, example: str | None = None) -> JSONResponse:
        if tab not in TABS or not models.tab_tasks(tab):
            return _error(400, f"no such tab for this model: {tab}")
        try:
            if example is not None:
                if example not in examples:
                    return _error(404, f"no such example: {example}")
                data = examples[example].read_bytes()
            else:
                data = await _read_upload(request, limit)
        except TooLarge:
            return _error(413, f"the file is larger than {max_upload_mb:g} MB")
        except UserError as error:
            return _error(400, str(error))
        kind = sniff(data)
        if kind is None or kind not in TABS[tab]["kinds"]:
            wanted = " or ".join(TABS[tab]["kinds"])
            found = f"a {kind} file" if kind else "not a file this app reads"
            return _error(415, f"this tab takes {wanted}; the upload is {found}")

        def prepare(folder: Path):
            source = folder / f"input{stored_suffix(kind, data)}"
            source.write_bytes(data)
            return lambda job: run_tab(models, tab, source, job)

        try:
            job = queue.submit(prepare)
        except Busy:
            return _error(503, "busy, try again in a moment")
        return JSONResponse({"id": job.id})

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job.view()

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        job = queue.cancel(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job.view()

    @app.get("/api/jobs/{job_id}/files/{name:path}")
    def download(job_id: str, name: str):
        job = queue.get(job_id)
        if job is None or job.state != "done":
            raise HTTPException(404, "no such file")
        written = {f["url"].split("/files/", 1)[1]: f for run in job.result["runs"] for f in run["files"]}
        if name not in written:
            raise HTTPException(404, "no such file")
        path = job.folder / name  # a name the job itself wrote, never the request's own path
        return FileResponse(path, filename=Path(name).name)

    @app.get("/api/examples/{name}")
    def example_file(name: str):
        if name not in examples:
            raise HTTPException(404, "no such example")
        return FileResponse(examples[name], filename=name)

    app.state.queue = queue
    return app


async def _read_upload(request, limit: int) -> bytes:
    """The multipart field ``file``, refused past ``limit`` bytes while it arrives."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + 64 * 1024:  # room for the multipart framing
            raise TooLarge
    form = await _parse_form(request, bytes(body))
    upload = form.get("file")
    if upload is None:
        raise UserError("no file in the upload (a multipart field named 'file')")
    if len(upload) > limit:
        raise TooLarge
    return upload


async def _parse_form(request, body: bytes) -> dict[str, bytes]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartParser

    async def stream():
        yield body

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UserError("send the file as a multipart form (a field named 'file')")
    parser = MultiPartParser(request.headers, stream(), max_files=1, max_fields=4)
    try:
        form = await parser.parse()
    except Exception as error:  # a malformed form is the request's problem, not the server's
        raise UserError(f"the upload is not a readable multipart form ({type(error).__name__})") from None
    out = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            out[key] = await value.read()
            await value.close()
    return out


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
