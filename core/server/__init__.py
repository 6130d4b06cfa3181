"""`ftk serve`: a trained model behind HTTP, on Starlette and uvicorn.

`create_app` builds the application (see `ftk.server.app` for its routes);
`serve` loads a model and runs it until interrupted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import uvicorn

from ftk.server.app import Limits, create_app

__all__ = ["Limits", "check_name", "create_app", "default_name", "serve"]

log = logging.getLogger(__name__)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def default_name(path: str | Path) -> str:
    """The model name clients use when none is given: the run's folder name
    (for `RUN/export`, `RUN`'s), or a TFLite file's stem."""
    path = Path(path).resolve()
    if path.suffix == ".tflite":
        return path.stem
    return path.parent.name if path.name == "export" else path.name


def check_name(name: str) -> None:
    """Refuse a model name that cannot stand in a URL path or a folder name."""
    from ftk.errors import ConfigError

    if not NAME.fullmatch(name):
        raise ConfigError(f"Model name {name!r} cannot be used in /v1/models/NAME URLs: use "
                          "letters, digits, '.', '_' and '-' (--name NAME).")


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = 8501,
          name: str | None = None, limits: Limits = Limits(),
          plugins: Sequence[str] = ()) -> None:
    """Serve the run directory, export folder or TFLite file at `path` until
    interrupted (Ctrl-C or SIGTERM). Port 0 takes a free port; the log says
    which."""
    from ftk.api import load

    name = name or default_name(path)
    check_name(name)
    model = load(path, plugins=plugins)
    app = create_app(model, name, limits)
    log.info(f"Loaded {path} ({model.task.name}) as {name!r}; batches of up to "
             f"{limits.max_batch}, waiting up to {limits.batch_timeout_ms:g} ms.")
    server = _Server(uvicorn.Config(_RequestLog(app), host=host, port=port, log_config=None,
                                    access_log=False, lifespan="on"), name)
    server.run()


class _Server(uvicorn.Server):
    """uvicorn's server, logging the address it bound once it listens."""

    def __init__(self, config: uvicorn.Config, name: str):
        super().__init__(config)
        self.name = name

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            base = f"http://{host}:{port}"
            log.info(f"Serving at {base}/ (page), {base}/v1/models/{self.name}:predict "
                     f"(TF Serving REST) and {base}/predict (readable). Ctrl-C stops.")


class _RequestLog:
    """ASGI middleware: one log line per HTTP request, when it is answered."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        started, status = time.perf_counter(), [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info(f'{client[0]} "{scope["method"]} {scope["path"]}" {status[0]} '
                     f"{(time.perf_counter() - started) * 1000:.1f} ms")
