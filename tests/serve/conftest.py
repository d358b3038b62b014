import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from serve.app import create_app
from serve.sessions import SessionManager
from tests.videollama3.conftest import tiny, videos  # noqa: F401  (shared fixtures)


@contextlib.contextmanager
def live_service(manager: SessionManager) -> Iterator[str]:
    """The service on ``manager`` in a real server (uvicorn, a free port, its own thread) for the block:
    yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(manager), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
