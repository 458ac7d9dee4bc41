"""A server started and stopped from code (the GUI's Serve & load tab, tests): the same
app as ``playground serve``, uvicorn in a background thread, no signal handlers."""

from __future__ import annotations

import threading
import time
from typing import Any

from playground.core.config import RunConfig


class ServerHandle:
    def __init__(self, config: RunConfig, *, host: str = "127.0.0.1", port: int = 8000,
                 batching: bool = True, progress: Any = lambda _m: None, **options: Any) -> None:
        """Build the engine and start serving; returns once the port accepts requests
        (raises with the reason when the model or the port fails)."""
        import uvicorn

        from playground.core.pipeline import build_engine
        from playground.core.serve.app import create_app
        from playground.core.serve.batching import BatchScheduler

        self.config, self.host, self.port, self.batching = config, host, port, batching
        self.engine = build_engine(config, progress=progress)
        self.app = create_app(self.engine, batching=batching, **options)
        self.describe = (BatchScheduler.explain(self.engine, options.get("max_batch", 8),
                                                options.get("prefill_chunk", 32))
                         if batching else "batching off: one request at a time")
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port,
                                                     log_level="error"))
        self._thread = threading.Thread(target=self._server.run, name="serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"could not serve on {host}:{port} (is the port in use?)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on {host}:{port} did not start in 30 s")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def metrics(self) -> Any:
        return self.app.state.metrics

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop accepting, let running streams finish, stop; False if it had to give up."""
        self._server.should_exit = True
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        return not self._thread.is_alive()
