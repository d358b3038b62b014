"""Streaming sessions served to many clients: each has its own memory backend; all share one model,
which runs one request at a time (a lock: frames pushed and questions asked wait their turn).

A session is fed either by a source it reads itself (a file under the media root played at its own
pace, or a URL: :class:`~videollama3.live.LiveSource`, dropping frames when the model is behind)
or by frames its client pushes (JPEG / PNG). Every change is also an event (``status`` after each
frame, ``answer`` after each question) that server-sent-event clients receive as it happens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import itertools
import math
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memory_bank import MemoryBankError, build_memory
from videollama3.errors import QuestionError, VideoError
from videollama3.live import URL_SCHEMES, LiveSource
from videollama3.questions import VIDEO_EXTENSIONS
from videollama3.session import StreamingSession, tier_layout


class ServeError(ValueError):
    """A request the service refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """What one client may ask of the service.

    Attributes:
        max_sessions: sessions open at once.
        max_upload_bytes: size of an uploaded video.
        max_frame_bytes: size of a pushed JPEG / PNG frame.
        max_frame_pixels: width x height of a pushed frame.
        max_question_chars: length of a question.
        max_events: events a session keeps for clients that connect (or reconnect) late: the latest
            ones; older ones are dropped, so a session that streams for days holds no more (a status
            follows each frame, and each supersedes the one before it).
    """

    max_sessions: int = 8
    max_upload_bytes: int = 200 * 2**20
    max_frame_bytes: int = 8 * 2**20
    max_frame_pixels: int = 4096 * 4096
    max_question_chars: int = 1000
    max_events: int = 1000


@dataclass
class ServedSession:
    """One client's stream: its :class:`StreamingSession` (own memory), its source, its events.

    Attributes:
        id: the session's id in the URLs.
        session: the streaming session (its memory is this client's alone).
        source: the source it reads, or None when its client pushes frames.
        name: the source as given (a media-root path or a URL), for display.
        events: the latest events (``{"event": "status" | "answer" | "closed", ...}``), in order: at most
            ``maxlen`` of the deque (:attr:`Limits.max_events`), the oldest dropped first.
        first_event: the number of the first event in :attr:`events` (events are numbered from 0 over the
            session's life): how many were dropped.
        error: why its source stopped, when it broke off.
        closed / ended: closed by a client; its source reached its end.
        changed: notified on each new event (threads wait on it; coroutines use :meth:`next_events`).
    """

    id: str
    session: StreamingSession
    source: LiveSource | None = None
    name: str = "pushed frames"
    events: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=Limits.max_events))
    first_event: int = 0
    error: str | None = None
    closed: bool = False
    ended: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)
    _waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set, repr=False)
    _in_flight: set[str] = field(default_factory=set, repr=False)

    @contextlib.contextmanager
    def one_at_a_time(self, kind: str, wait_for: str) -> Iterator[None]:
        """The block for one request of ``kind`` ("frame", "question") of this session at a time.

        A request waiting for the model holds one of the service's worker threads (40), so a client firing
        requests without waiting for their answers would take them all and stall every session; a second
        one while the first is under way is refused instead, as a live source drops a frame the model
        cannot take in time.

        Raises:
            ServeError: 429 while another request of ``kind`` of this session is under way, saying what to
                wait for (``wait_for``).
        """
        with self.changed:
            if kind in self._in_flight:
                raise ServeError(429, f"a {kind} of session {self.id} is still {wait_for}; send the next one "
                                      f"after its answer")
            self._in_flight.add(kind)
        try:
            yield
        finally:
            with self.changed:
                self._in_flight.discard(kind)

    def emit(self, kind: str, **data: Any) -> None:
        """Record an event and wake the clients waiting for one: threads on :attr:`changed`, coroutines in
        :meth:`next_events` (through their event loop; this runs on the source's or a request's thread)."""
        with self.changed:
            if len(self.events) == self.events.maxlen:
                self.first_event += 1  # the deque drops its oldest
            self.events.append({"event": kind, **data})
            self.changed.notify_all()
            waiters = list(self._waiters)
        for loop, woken in waiters:
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # that loop has closed (the service stopped): nobody is waiting there
                pass

    @property
    def listeners(self) -> int:
        """Coroutines waiting in :meth:`next_events` now (server-sent-event clients between two events)."""
        with self.changed:
            return len(self._waiters)

    def _events_from(self, seen: int) -> tuple[list[dict[str, Any]], int]:
        """Under :attr:`changed`: the events kept from number ``seen`` on, and the number after the last."""
        new = list(itertools.islice(self.events, max(seen - self.first_event, 0), None))
        return new, self.first_event + len(self.events)

    async def next_events(self, seen: int, timeout: float) -> tuple[list[dict[str, Any]], int]:
        """The events from number ``seen`` on (those still kept: a client further behind gets the oldest kept
        first), waiting up to ``timeout`` seconds for one when there is none yet (then the empty list), with
        the number to ask from next. Waits on the event loop, not on a thread: a server-sent-event client on a
        quiet session holds no worker thread (a thread each would exhaust the service's pool at 40 clients and
        stall every other request), and one that disconnects is dropped at once."""
        loop, woken = asyncio.get_running_loop(), asyncio.Event()
        waiter = (loop, woken)
        with self.changed:  # checked and registered under the lock emit() takes: no event falls in between
            if self.first_event + len(self.events) > seen:
                return self._events_from(seen)
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(woken.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self.changed:
                self._waiters.discard(waiter)
        with self.changed:
            return self._events_from(seen)

    def state(self) -> dict[str, Any]:
        """``{id, source, time (s), frames_seen, dropped, playing, error, tiers: {tier: frame times}}``."""
        stats = self.source.stats if self.source is not None else None
        return {"id": self.id, "source": self.name, "time": self.session.time, "frames_seen": self.session.frames_seen,
                "dropped": stats.dropped if stats else 0, "playing": self.source is not None and not (self.closed or self.ended), "error": self.error,
                "tiers": tier_layout(self.session.memory)}


class SessionManager:
    """The sessions of one service on one model.

    Args:
        base: a session on the loaded model: its model and processor are shared, its memory
            backend name and options are each new session's.
        memory: the backend name every session gets.
        memory_options: its options.
        media_root: the only folder files may be opened from (and uploads go to, under ``uploads/``).
        limits: see :class:`Limits`.
    """

    def __init__(self, base: StreamingSession, memory: str, memory_options: dict[str, Any] | None,
                 media_root: str | Path, limits: Limits | None = None) -> None:
        self.base, self.memory, self.memory_options = base, memory, dict(memory_options or {})
        self.media_root = Path(media_root).resolve()
        self.limits = limits or Limits()
        self.model_lock = threading.Lock()
        self.sessions: dict[str, ServedSession] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- sessions
    def _new_session(self) -> StreamingSession:
        options = {"mm_hidden_size": self.base.model.memory_width, **self.memory_options}
        memory = build_memory(self.memory if self.memory != "none" else "unbounded", **options)
        return StreamingSession(self.base.model, self.base.processor, memory, self.base.frame_tokens, encode_batch=1)

    def open(self, source: str | None = None, fps: float = 1.0, realtime: bool = True) -> ServedSession:
        """A new session: reading ``source`` (a path under the media root, or a URL) in real time, or
        waiting for pushed frames when ``source`` is None.

        Raises:
            ServeError: 429 when the session limit is reached; 403 for a path outside the media root
                or another kind of source; 404 for a missing file; 422 for a source that is not a video
                or a bad ``fps``.
        """
        if not (isinstance(fps, (int, float)) and 0 < fps <= 30):
            raise ServeError(422, f"fps must be a number of frames per second in (0, 30], got {fps!r}")
        with self._lock:
            if len(self.sessions) >= self.limits.max_sessions:
                raise ServeError(429, f"{self.limits.max_sessions} sessions are open, the most this service "
                                      "allows; close one (DELETE /api/sessions/ID)")
            live = None
            if source is not None:
                url = source.startswith(URL_SCHEMES)
                target = source if url else str(self.media_path(source))
                try:  # a file read as fast as it decodes loses nothing; played or live, late frames are dropped
                    live = LiveSource(target, fps=fps, realtime=realtime, buffer=2, drop=url or realtime)
                except VideoError as e:
                    raise ServeError(422, str(e).replace(str(self.media_root), "<media root>")) from None
            served = ServedSession(uuid.uuid4().hex[:12], self._new_session(), live, source or "pushed frames",
                                   events=collections.deque(maxlen=self.limits.max_events))
            self.sessions[served.id] = served
        if live is not None:
            threading.Thread(target=self._play, args=(served,), name=f"vl3mem-session-{served.id}", daemon=True).start()
        return served

    def media_path(self, name: str) -> Path:
        """``name`` under the media root.

        Raises:
            ServeError: 403 for a path outside it (``..``, an absolute path, a link out), or a
                source of another kind (``-``, a device, ``file://``); 404 for no such file.
        """
        if "://" in name or name in ("", "-") or name.startswith("/dev/"):
            raise ServeError(403, f"{name!r} is not a file under the media root nor an http(s)/rtsp/udp URL")
        path = (self.media_root / name).resolve()
        if not path.is_relative_to(self.media_root):
            raise ServeError(403, f"{name!r} is outside the media root; only files under it can be opened")
        if not path.is_file():
            raise ServeError(404, f"no file {name!r} under the media root")
        return path

    def get(self, session_id: str) -> ServedSession:
        """The open session ``session_id``.

        Raises:
            ServeError: 404 for an unknown (or closed) session.
        """
        served = self.sessions.get(session_id)
        if served is None:
            raise ServeError(404, f"no session {session_id!r}; open one with POST /api/sessions")
        return served

    def close(self, session_id: str) -> None:
        """Stop the session's source, drop its memory, wake its event clients.

        Raises:
            ServeError: 404 for an unknown session.
        """
        served = self.get(session_id)
        with self._lock:
            self.sessions.pop(session_id, None)
        served.closed = True
        if served.source is not None:
            served.source.close()
        served.emit("closed")

    def close_all(self) -> None:
        """Close every session (the service is stopping)."""
        for session_id in list(self.sessions):
            self.close(session_id)

    def samples(self) -> list[str]:
        """Video files under the media root (not its uploads), by name."""

        return sorted(str(p.relative_to(self.media_root)) for p in self.media_root.rglob("*")
                      if p.suffix.lower() in VIDEO_EXTENSIONS[1:] and p.is_file() and "uploads" not in p.parts)

    # ----------------------------------------------------------------- frames
    def _play(self, served: ServedSession) -> None:

        try:
            for frame, t in served.source:
                if served.closed:
                    break
                with self.model_lock:
                    served.session.push_frame(frame, t)
                served.emit("status", **served.state())
        except VideoError as e:
            served.error = str(e)
        finally:
            served.ended = True
            served.emit("status", **served.state())

    def push(self, served: ServedSession, data: bytes, timestamp: float | None) -> dict[str, Any]:
        """Decode a pushed JPEG / PNG frame and add it at ``timestamp`` (default: one second after the last).

        Raises:
            ServeError: 409 for a session that reads its own source; 413 for a frame too large;
                422 for bytes that are not an image, a frame the model cannot take (an aspect ratio
                over 200), or a timestamp that is not finite seconds >= 0 or is before the last frame's;
                429 while the session's previous frame is still waiting for the model
                (:meth:`ServedSession.one_at_a_time`). The session is unchanged.
        """
        from PIL import Image, UnidentifiedImageError

        if served.source is not None:
            raise ServeError(409, f"session {served.id} reads {served.name}; push frames to a session opened "
                                  "without a source")
        if len(data) > self.limits.max_frame_bytes:
            raise ServeError(413, f"a frame of {len(data)} bytes is over the limit of {self.limits.max_frame_bytes}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > self.limits.max_frame_pixels:
                    raise ServeError(413, f"a {image.width}x{image.height} frame is over the limit of "
                                          f"{self.limits.max_frame_pixels} pixels")
                frame = np.array(image.convert("RGB"))
        except Image.DecompressionBombError:  # Pillow refuses to open one this large (a few KB can declare it)
            raise ServeError(413, f"a frame of over {2 * Image.MAX_IMAGE_PIXELS} pixels is over the limit of "
                                  f"{self.limits.max_frame_pixels} pixels") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ServeError(422, f"the frame is not a JPEG or PNG image ({e.__class__.__name__})") from None
        last = served.session.time
        t = (last + 1.0 if last is not None else 0.0) if timestamp is None else float(timestamp)
        if not math.isfinite(t) or t < 0:
            raise ServeError(422, f"frame time {t} s is not a finite number of seconds >= 0")
        if last is not None and t < last:
            raise ServeError(422, f"frame time {t} s is before the last frame's ({last} s); push frames in time order")
        with served.one_at_a_time("frame", "waiting for the model"):
            try:
                with self.model_lock:
                    served.session.push_frame(frame, t)
            except (ValueError, MemoryBankError) as e:  # checked before the session changes
                raise ServeError(422, f"the frame cannot be encoded: {e}") from None
        state = served.state()
        served.emit("status", **state)
        return state

    # -------------------------------------------------------------- questions
    def ask(self, served: ServedSession, question: str, max_new_tokens: int = 64) -> dict[str, Any]:
        """Answer ``question`` from the session's memory now: ``{question, answer, time, latency_s, memory}``.

        Raises:
            ServeError: 422 for an empty or too long question, or one with a special token; 409
                before the first frame; 429 while the session's previous question is being answered.
        """

        if not isinstance(question, str) or not question.strip():
            raise ServeError(422, "the question is empty")
        if len(question) > self.limits.max_question_chars:
            raise ServeError(422, f"a question of {len(question)} characters is over the limit of "
                                  f"{self.limits.max_question_chars}")
        if not served.session.frames_seen:
            raise ServeError(409, "the session has no frame yet; wait for the stream, or push a frame")
        with served.one_at_a_time("question", "being answered"):
            try:
                with self.model_lock:
                    started = time.perf_counter()
                    answer = served.session.ask(question, max_new_tokens=max_new_tokens)
            except (QuestionError, ValueError) as e:
                raise ServeError(422, str(e)) from None
        result = {"question": question, "answer": answer.answer, "time": answer.time,
                  "latency_s": round(time.perf_counter() - started, 4), "frames_seen": answer.frames_seen,
                  "memory": answer.tiers}
        served.emit("answer", **result)
        return result

    # ------------------------------------------------------------------ state
    def save(self, served: ServedSession) -> bytes:
        """The session's memory as a state file (the backend's ``state_dict``, ``torch.save`` format)."""
        buffer = io.BytesIO()
        with self.model_lock:
            torch.save(served.session.memory.state_dict(), buffer)
        return buffer.getvalue()

    def restore(self, served: ServedSession, data: bytes) -> dict[str, Any]:
        """Replace the session's memory by a saved one.

        Raises:
            ServeError: 409 for a session reading a source; 422 for bytes that are not a state of
                this service's memory backend (the memory is then unchanged).
        """

        if served.source is not None:
            raise ServeError(409, "restore into a session opened without a source")
        try:  # weights_only: a file from the network unpickles tensors and plain values only
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (RuntimeError, ValueError, EOFError, TypeError, pickle.UnpicklingError) as e:
            raise ServeError(422, f"not a memory file saved by GET /api/sessions/{{id}}/memory ({len(data)} bytes that "
                                  f"do not load as one: {e.__class__.__name__})") from None
        try:
            with self.model_lock:
                served.session.memory.load_state_dict(state)
        except (MemoryBankError, RuntimeError, ValueError, TypeError) as e:
            raise ServeError(422, f"not a saved memory of this service's backend ({str(e)[:200]})") from None
        state = served.state()
        served.emit("status", **state)
        return state
