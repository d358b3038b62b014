from tests.videollama3.conftest import videos  # noqa: F401  (shared fixture)
