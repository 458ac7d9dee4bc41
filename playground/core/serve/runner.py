"""Running the app: ``draining_server`` (Ctrl+C drains, for ``playground serve`` and
here) and ``ServerHandle``, a server started and stopped from code (the GUI's Serve &
load tab): the same app as ``playground serve``, uvicorn in a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any

from playground.core.config import RunConfig
from playground.core.optimize.device import leave_a_core, wide_pass_threads

DRAIN_S = 120.0  # the longest a drain waits for requests in flight


MAX_CONNECTIONS = 512  # beyond this uvicorn answers 503 (half-open connections included)


def draining_server(app: Any, host: str, port: int, log_level: str = "warning",
                    drain_s: float = DRAIN_S) -> Any:
    """A uvicorn server whose first Ctrl+C (or ``drain()``) refuses new requests with 503
    and stops once the requests in flight have finished, or after ``drain_s`` whatever
    is left; a second Ctrl+C stops at once. uvicorn's own graceful shutdown could drop a
    stream that was still being written."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if app.state.draining:  # the second Ctrl+C: now
                self.force_exit = self.should_exit = True
                return
            self.drain()

        def drain(self) -> None:
            app.state.draining = True
            self.idle_ticks = 0
            self.drain_until = time.monotonic() + drain_s

        async def on_tick(self, counter: int) -> bool:
            if app.state.draining:
                # idle for 0.3 s: the last streams have written their final chunks too
                self.idle_ticks = 0 if app.state.busy() else self.idle_ticks + 1
                if self.idle_ticks >= 3 or time.monotonic() > self.drain_until:
                    return True
            return await super().on_tick(counter)

    # idle connections (a client that never sends its request included) close after 5 s
    return DrainingServer(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                         limit_concurrency=MAX_CONNECTIONS,
                                         timeout_keep_alive=5))


class ServerHandle:
    def __init__(self, config: RunConfig, *, host: str = "127.0.0.1", port: int = 8000,
                 batching: bool = True, progress: Any = lambda _m: None, **options: Any) -> None:
        """Build the engine and start serving; returns once the port accepts requests
        (raises with the reason when the model or the port fails)."""
        from playground.core.pipeline import build_engine
        from playground.core.serve.app import create_app
        from playground.core.serve.batching import describe

        options.setdefault("wide_threads", wide_pass_threads(config))
        config = leave_a_core(config)
        self.config, self.host, self.port, self.batching = config, host, port, batching
        self.engine = build_engine(config, progress=progress)
        self.app = create_app(self.engine, batching=batching, **options)
        self.describe = describe(self.engine, batching, **{
            k: v for k, v in options.items() if k in ("max_batch", "prefill_chunk")})
        self._server = draining_server(self.app, host, port, log_level="error")
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
        """Refuse new requests, let running streams finish, stop; False if it gave up."""
        self._server.drain()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        return not self._thread.is_alive()
