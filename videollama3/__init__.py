"""The hook into transformers' native VideoLLaMA3: decoding, preprocessing, per-frame
encoding, the processor (prompt, chat template, labels), assembly, streaming sessions, the
timed-question data shared by evaluation and training, and the ``vl3mem answer`` command.

Modules: :mod:`~videollama3.video` (PyAV decoding), :mod:`~videollama3.preprocess`
(frames -> ``pixel_values``), :mod:`~videollama3.modeling` (the wrapped model),
:mod:`~videollama3.processing` (the processor), :mod:`~videollama3.loading` (checkpoints,
memory, sessions), :mod:`~videollama3.session` (streaming), :mod:`~videollama3.checkpoint`
(fine-tuned checkpoints), :mod:`~videollama3.questions` (timed questions),
:mod:`~videollama3.tiny` (the offline test model), :mod:`~videollama3.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exports import lazy_exports

if TYPE_CHECKING:
    from .errors import AnnotationError, CheckpointError, ModelLoadError, QuestionError, UsageError, VideoError
    from .loading import DEFAULT_MODEL, LoadSpec, build_session, load_model, load_session, resolve_load_spec
    from .modeling import VideoLlama3WithMemory, memory_tokens
    from .preprocess import preprocess_frames
    from .processing import MemoryProcessor
    from .session import Answer, StreamingSession, run_stream
    from .tiny import build_tiny_model
    from .video import VideoInfo, iter_frames, open_video, probe_video

_EXPORTS = {
    "AnnotationError": "errors",
    "CheckpointError": "errors",
    "ModelLoadError": "errors",
    "QuestionError": "errors",
    "UsageError": "errors",
    "VideoError": "errors",
    "DEFAULT_MODEL": "loading",
    "LoadSpec": "loading",
    "build_session": "loading",
    "load_model": "loading",
    "load_session": "loading",
    "resolve_load_spec": "loading",
    "VideoLlama3WithMemory": "modeling",
    "memory_tokens": "modeling",
    "preprocess_frames": "preprocess",
    "MemoryProcessor": "processing",
    "Answer": "session",
    "StreamingSession": "session",
    "run_stream": "session",
    "build_tiny_model": "tiny",
    "VideoInfo": "video",
    "iter_frames": "video",
    "open_video": "video",
    "probe_video": "video",
}
"""Each public name and the submodule it comes from, imported when first used
(a command's ``--help`` does not load transformers)."""

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
