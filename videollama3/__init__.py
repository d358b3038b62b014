"""The hook into transformers' native VideoLLaMA3: decoding, preprocessing,
per-frame encoding, prompt building, streaming sessions, CLI."""

from .errors import ModelLoadError, QuestionError, VideoError
from .model import VideoLlama3WithMemory
from .models import DEFAULT_MODEL, build_tiny_model, load_model
from .preprocess import preprocess_frames
from .session import Answer, StreamingSession
from .video import VideoInfo, iter_frames, probe_video

__all__ = [
    "DEFAULT_MODEL",
    "Answer",
    "ModelLoadError",
    "QuestionError",
    "StreamingSession",
    "VideoError",
    "VideoInfo",
    "VideoLlama3WithMemory",
    "build_tiny_model",
    "iter_frames",
    "load_model",
    "preprocess_frames",
    "probe_video",
]
