from tests.videollama3.conftest import tiny, videos  # noqa: F401  (shared fixtures)
