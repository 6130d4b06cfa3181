"""The HTTP application `ftk serve` runs: TF Serving's REST routes, ftk's
readable predictions, and the page to try the model.

Routes:
    GET  /                                   the page (static files, no CDN)
    GET  /info                               name, task and page settings
    POST /predict                            readable predictions
    GET  /v1/models/NAME[/versions/1]        TF Serving model status
    GET  /v1/models/NAME[/versions/1]/metadata   signatures
    POST /v1/models/NAME[/versions/1]:predict    TF Serving predict
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ftk.server import rest
from ftk.server.batching import Batcher
from ftk.server.rest import RequestError

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page")
# `NAME`, `NAME/versions/N` or `NAME/labels/L`, then `/metadata` or `:VERB`.
MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/(?:versions|labels)/(?P<version>[^/:]+))?"
                        r"(?P<rest>/metadata|:[a-z_]+)?$")


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are batched."""

    max_batch: int = 32
    batch_timeout_ms: float = 5.0
    max_body_mb: float = 16.0
    max_instances: int = 256


def create_app(model: Any, name: str, limits: Limits = Limits()) -> Starlette:
    """The application serving `model` (a loaded `Predictor`) as `name`."""
    signatures = model.signatures()
    # Files travel as bytes: a plain string is never read as a path on this machine.
    takes_files = model.task.file_inputs or model.task.page.get("input") == "file"
    batcher = Batcher(lambda key, payloads: _run(model, limits, key, payloads, takes_files),
                      limits.max_batch, limits.batch_timeout_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        batcher.start()
        yield
        await batcher.stop()

    async def page(request: Request) -> FileResponse:
        return FileResponse(PAGE / "index.html")

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"name": name, "task": model.task.name,
                             "page": dict(model.task.page),
                             "max_instances": limits.max_instances,
                             "max_batch": limits.max_batch,
                             # so far: the mean batch is instances / model_calls
                             "model_calls": batcher.calls, "instances": batcher.instances})

    async def readable(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = rest.parse_body(await _body(request, limits))
        instances = rest.instances_of(body, limits.max_instances)
        values = [_readable_value(value, f"instances[{index}]", takes_files)
                  for index, value in enumerate(instances)]
        try:
            predictions = await batcher.submit(("predict",), values, len(values))
        except Exception as error:  # noqa: BLE001 - the model refused these inputs
            raise RequestError(f"The model cannot run these inputs: {_first_line(error)}") \
                from None
        failed = next((row for row in predictions if "error" in row), None)
        if failed is not None:
            raise RequestError(f"instances[{failed['input']}]: {failed['error']}")
        return _JSON({"model": name, "predictions": predictions,
                             "latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    async def models(request: Request) -> JSONResponse:
        match = MODEL_PATH.match(request.path_params["path"])
        if match is None:
            raise RequestError(f"No route {request.url.path}: see GET /v1/models/{name}.", 404)
        if match["name"] != name or match["version"] not in (None, "1"):
            asked = match["name"] + (f" version {match['version']}" if match["version"] else "")
            raise RequestError(f"Servable not found: {asked}. This server serves {name!r}, "
                               "version 1.", 404)
        rest_of, method = match["rest"] or "", request.method
        if rest_of == "" and method == "GET":
            return JSONResponse(rest.status_body())
        if rest_of == "/metadata" and method == "GET":
            return JSONResponse(rest.metadata_body(name, signatures))
        if rest_of == ":predict" and method == "POST":
            return await _tf_predict(request)
        raise RequestError(f"{method} {request.url.path} is not a route of this server: it "
                           f"has GET /v1/models/{name}, GET /v1/models/{name}/metadata and "
                           f"POST /v1/models/{name}:predict.", 404 if method == "POST" else 405)

    async def _tf_predict(request: Request) -> JSONResponse:
        body = rest.parse_body(await _body(request, limits))
        signature = body.get("signature_name") or "serving_default"
        if signature not in signatures:
            raise RequestError(f"Signature {signature!r} is not in this model; it has "
                               f"{', '.join(sorted(signatures))}.")
        tensors, rows = rest.request_inputs(body, signatures[signature]["inputs"],
                                            limits.max_instances)
        size = len(next(iter(tensors.values())))
        try:
            outputs = await batcher.submit(("signature", signature), tensors, size)
        except Exception as error:  # noqa: BLE001 - the model refused these inputs
            raise RequestError(f"The model cannot run these inputs: {_first_line(error)}") \
                from None
        return _JSON(rest.response_body(outputs, rows))

    async def refused(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, HTTPException):  # the router's own 404 and 405
            return JSONResponse({"error": f"{request.method} {request.url.path}: "
                                 f"{error.detail}"}, status_code=error.status_code)
        status = error.status if isinstance(error, RequestError) else 500
        if status == 500:
            log.exception("Request failed")
        return JSONResponse({"error": str(error) if status != 500 else
                             f"Internal error: {type(error).__name__}. The server log has it."},
                            status_code=status)

    app = Starlette(
        routes=[Route("/", page), Route("/info", info),
                Route("/predict", readable, methods=["POST"]),
                Route("/v1/models/{path:path}", models, methods=["GET", "POST"]),
                Mount("/static", StaticFiles(directory=PAGE), name="static")],
        exception_handlers={RequestError: refused, HTTPException: refused, Exception: refused},
        lifespan=lifespan)
    app.state.batcher = batcher
    return app


async def _body(request: Request, limits: Limits) -> bytes:
    """The request body, refused (413) past `max_body_mb` before it is all read."""
    limit = int(limits.max_body_mb * 1024 * 1024)
    too_big = RequestError(f"The body is over this server's limit of {limits.max_body_mb:g} MB "
                           "(ftk serve --max-body-mb).", status=413)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _run(model: Any, limits: Limits, key: tuple, payloads: Sequence[Any],
         takes_files: bool) -> list[Any]:
    """One model call for a batch of requests' payloads; a result per payload."""
    sizes = [len(payload) if key[0] == "predict" else len(next(iter(payload.values())))
             for payload in payloads]
    if key[0] == "predict":
        flat = [value for payload in payloads for value in payload]
        rows = model.predict(flat, batch_size=limits.max_batch, keep_going=True)
        results, start = [], 0
        for size in sizes:  # errors name the instance within its own request
            chunk = rows[start:start + size]
            results.append([{**row, "input": row["input"] - start} if "error" in row else row
                            for row in chunk])
            start += size
        return results
    if takes_files:
        _check_files(model, payloads)
    combined = {name: np.concatenate([payload[name] for payload in payloads])
                for name in payloads[0]}
    outputs = model.call_signature(key[1], combined)
    bounds = np.cumsum([0, *sizes])
    return [{name: value[bounds[i]:bounds[i + 1]] for name, value in outputs.items()}
            for i in range(len(payloads))]


def _check_files(model: Any, payloads: Sequence[Any]) -> None:
    """Put a TF Serving request's file bytes through the task's own input
    checks, as the readable route does (an image's pixel count, read from
    its header, before the model decodes it), raising on the first that fails."""
    for payload in payloads:
        for values in payload.values():
            if values.dtype == object:
                for value in values.reshape(-1):
                    for _ in model.task.prediction_batches([bytes(value)], 1):
                        pass


def _readable_value(value: Any, where: str, takes_files: bool) -> Any:
    """An instance of the readable route: `{"b64": ...}` bytes for a task
    taking files, a string otherwise."""
    if takes_files:
        if not rest.is_b64(value):
            raise RequestError(f'{where}: this model takes files, sent as {{"b64": ...}}.')
    elif not isinstance(value, str) and not rest.is_b64(value):
        raise RequestError(f"{where}: this model takes texts (JSON strings).")
    return rest.decode_value(value, where)


class _JSON(JSONResponse):
    """JSON answers that may hold NaN or Infinity, as TF Serving's do."""

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=False, allow_nan=True,
                          separators=(",", ":")).encode("utf-8")


def _first_line(error: Exception) -> str:
    from ftk.errors import first_line

    return first_line(error)
