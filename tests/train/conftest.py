import json
from pathlib import Path

import pytest

from tests.videollama3.conftest import bikes_frames, tiny, videos  # noqa: F401  (shared fixtures; tiny is read-only here)

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "train" / "configs" / "tiny.yaml"


@pytest.fixture
def fresh_tiny():
    """A new tiny model per test: LoRA injection changes a model in place."""
    from videollama3.tiny import build_tiny_model

    return build_tiny_model(seed=0)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def short_data(tmp_path, videos):  # noqa: F811  (the imported fixture)
    """Two short conversations (bikes.mp4, carphone_distorted.mp4): fast streams."""
    records = [
        {"video": "bikes.mp4", "fps": 1, "questions": [
            {"id": "b1", "time": 1.0, "question": "What moves?", "answer": "bikes"},
            {"id": "b2", "time": 2.5, "question": "Which colour?", "options": ["red", "green"], "answer": "B"},
            {"id": "b3", "time": 4.0, "question": "Still moving?", "answer": "yes"},
        ]},
        {"video": "carphone_distorted.mp4", "fps": 2, "questions": [
            {"id": "c1", "time": 0.5, "question": "Who is there?", "answer": "a man"},
            {"id": "c2", "time": 2.0, "question": "Where is he?", "answer": "in a car"},
        ]},
    ]
    return write_jsonl(tmp_path / "short.jsonl", records)
