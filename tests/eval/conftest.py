from tests.videollama3.conftest import bikes_frames, tiny, videos  # noqa: F401  (shared fixtures)
