"""The HTTP service (FastAPI): sessions, frames, questions, events, saved memories, and the page.

Routes (OpenAPI docs at ``/docs``):

- ``GET /`` the page; ``GET /media/{path}`` the media root's files (the page plays them);
- ``GET /api/samples`` the videos under the media root;
- ``POST /api/sessions`` ``{"source": path or URL or null, "fps": 1, "realtime": true}`` opens a session;
  ``POST /api/sessions/upload`` (multipart ``file``) opens one on an uploaded video;
- ``GET /api/sessions/{id}`` its state; ``DELETE`` closes it;
- ``POST /api/sessions/{id}/frames?t=SECONDS`` a JPEG / PNG body: a pushed frame;
- ``POST /api/sessions/{id}/questions`` ``{"question": ...}``: the answer, its stream time, the memory;
- ``GET /api/sessions/{id}/events`` server-sent events: ``status`` after each frame, ``answer``;
- ``GET /api/sessions/{id}/memory`` the memory as a state file; ``PUT`` restores one.

Every refusal is a 4xx with ``{"detail": "what was wrong and what to do"}``, but one: an upload whose
``Content-Length`` is over the limit is refused by FastAPI before any of this runs, a plain-text 413.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .sessions import ServeError, SessionManager

STATIC = Path(__file__).parent / "static"


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> str:
    """FastAPI's request-validation errors as one line, like every other refusal of the service: where
    (``body field 'fps'``, ``query parameter 'since'``), what pydantic says, and the value given, e.g.
    ``body field 'fps': Input should be a valid number, unable to parse string as a number (got 'abc')``."""
    places = {"body": "body field", "query": "query parameter", "path": "path parameter", "header": "header"}
    parts = []
    for error in errors:
        where, *names = [str(part) for part in error.get("loc", ())] or ["request"]
        place = places.get(where, where)
        if error.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'decode error')}); "
                         "send a JSON object")
            continue
        field_name = ".".join(n for n in names if n)
        given = "" if error.get("type") == "missing" or "input" not in error else f" (got {error['input']!r:.80})"
        parts.append(f"{place} {field_name!r}: {error.get('msg', 'invalid')}{given}" if field_name
                     else f"{place}: {error.get('msg', 'invalid')}{given}")
    return "; ".join(parts) or "the request is malformed"


class OpenRequest(BaseModel):
    """A session to open. A field it does not have is refused (422), not ignored: ``{"src": ...}`` would
    otherwise open a session that waits for pushed frames."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="a file under the media root, an http(s)/rtsp/udp URL, or null "
                                                 "to push frames")
    fps: float = Field(1.0, description="frames sampled per second of stream time")
    realtime: bool = Field(True, description="play a file at its own pace (false: as fast as it decodes)")


class QuestionRequest(BaseModel):
    """A question; a field it does not have is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid")

    question: str
    max_new_tokens: int = Field(64, ge=1, le=512)


MULTIPART_OVERHEAD = 64 * 1024
"""Bytes an upload's body may hold beyond the video itself: the multipart boundaries and headers."""


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, refused (413, naming ``what`` and ``limit``) as soon as it is over ``limit`` bytes:
    before reading it when its ``Content-Length`` says so, else while it arrives (a chunked body announces
    no length, and read whole first, one of any size would sit in memory before the check).

    Raises:
        ServeError: 413.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ServeError(413, f"{what} of {length} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(413, f"{what} of more than {limit} bytes is over the limit of {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(manager: SessionManager) -> FastAPI:
    """The service on ``manager``'s sessions (see the module docstring for the routes)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        manager.close_all()  # stop the sources' threads with the service

    app = FastAPI(title="vl3mem", description="Questions about a video while it streams, answered from a bounded memory.",
                  lifespan=lifespan)
    limits = manager.limits
    upload_too_large = f"the upload is over the limit of {limits.max_upload_bytes} bytes"

    @app.exception_handler(ServeError)
    async def refused(request: Request, e: ServeError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(413)
    async def too_large(request: Request, e: Exception) -> JSONResponse:  # an upload cut off as it arrived
        return JSONResponse({"detail": upload_too_large}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation_errors(e.errors())}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/samples")
    def samples() -> dict[str, list[str]]:
        """The videos under the media root."""
        return {"samples": manager.samples()}

    @app.post("/api/sessions", status_code=201)
    def open_session(request: OpenRequest) -> dict[str, Any]:
        """Open a session on a source, or one that waits for pushed frames."""
        return manager.open(request.source, request.fps, request.realtime).state()

    # FastAPI parses an upload's form, spooling its file to disk, before the route runs: its size limit is
    # FastAPI's, enforced as the body arrives (a chunked body announces no length); the others read theirs.
    @app.post("/api/sessions/upload", status_code=201, max_body_size=limits.max_upload_bytes + MULTIPART_OVERHEAD)
    def upload(file: UploadFile = File(...), fps: float = Query(1.0)) -> dict[str, Any]:
        """Open a session on an uploaded video (kept under the media root's ``uploads/``)."""
        # the client's name gives only the extension (FFmpeg probes the content; some containers need it),
        # and only letters and digits of it: the file's name is ours
        suffix = Path(file.filename or "").suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,7}", suffix) else ".mp4"
        target = manager.media_root / "uploads" / f"{uuid.uuid4().hex}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with target.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limits.max_upload_bytes:
                    out.close()
                    target.unlink()
                    raise ServeError(413, upload_too_large)
                out.write(chunk)
        try:
            return manager.open(str(target.relative_to(manager.media_root)), fps).state()
        except ServeError:
            target.unlink()
            raise

    @app.get("/api/sessions/{session_id}")
    def state(session_id: str) -> dict[str, Any]:
        """What the session's memory holds now."""
        return manager.get(session_id).state()

    @app.delete("/api/sessions/{session_id}")
    def close(session_id: str) -> dict[str, str]:
        """Close the session."""
        manager.close(session_id)
        return {"closed": session_id}

    @app.post("/api/sessions/{session_id}/frames")
    async def push(session_id: str, request: Request, t: float | None = Query(None, description="stream time, s")):
        """Push one JPEG / PNG frame (the request body) at stream time ``t``."""
        served = manager.get(session_id)
        data = await read_body(request, limits.max_frame_bytes, "a frame")

        return await run_in_threadpool(manager.push, served, data, t)

    @app.post("/api/sessions/{session_id}/questions")
    def ask(session_id: str, request: QuestionRequest) -> dict[str, Any]:
        """Answer a question from the memory now."""
        return manager.ask(manager.get(session_id), request.question, request.max_new_tokens)

    @app.get("/api/sessions/{session_id}/events")
    async def events(session_id: str, since: int = Query(0, ge=0, description="events already received"),
                     last_event_id: int | None = Header(None, ge=0, description="set by a reconnecting EventSource")
                     ) -> StreamingResponse:
        """Server-sent events of the session from event number ``since`` (events are numbered from 0; a session
        keeps the latest ``max_events``, so one further behind starts at the oldest kept): ``status``,
        ``answer``, ``closed`` (the last); a comment every 15 s keeps a quiet stream open. Each event carries
        its number as its SSE ``id``, so a browser's EventSource that reconnects (``Last-Event-ID``) goes on
        after the last event it got instead of receiving them all again."""
        served = manager.get(session_id)

        async def stream():
            seen = since if last_event_id is None else max(since, last_event_id + 1)
            while True:
                new, seen = await served.next_events(seen, timeout=15)
                if not new:
                    if served.closed:  # closed before this client asked for events it had already seen
                        return
                    yield ": keep-alive\n\n"
                for number, event in enumerate(new, seen - len(new)):
                    yield f"id: {number}\nevent: {event['event']}\ndata: {json.dumps(event)}\n\n"
                    if event["event"] == "closed":
                        return

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/api/sessions/{session_id}/memory")
    def save(session_id: str) -> Response:
        """The session's memory as a state file."""
        return Response(manager.save(manager.get(session_id)), media_type="application/octet-stream")

    @app.put("/api/sessions/{session_id}/memory")
    async def restore(session_id: str, request: Request) -> dict[str, Any]:
        """Replace the session's memory by a saved state file (the request body)."""
        served = manager.get(session_id)
        data = await read_body(request, limits.max_upload_bytes, "a state file")
        return await run_in_threadpool(manager.restore, served, data)

    app.mount("/media", StaticFiles(directory=manager.media_root), name="media")
    return app
