"""HTTP server for a trained classifier: JSON API, micro-batching, limits and a web page.

This module owns the network face of a run directory and nothing else: all scoring goes through
`llmclassify.predict.Classifier`. Concurrent requests are gathered by a `MicroBatcher` into one
`Classifier.predict` call, run in a single worker thread so the event loop keeps serving while
the model works. Every limit answers with a one-line JSON error (`{"error": ..., "status": ...}`);
a client never sees a stack trace, and one bad request never stops the server.

    app = create_app(Classifier.load(run_dir))          # FastAPI app, for tests or other servers
    run(run_dir, host="127.0.0.1", port=8000)           # what `llmclassify serve RUN` calls
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
    field_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmclassify import __version__
from llmclassify.errors import UserError
from llmclassify.predict import read_split

log = logging.getLogger("llmclassify.serve")

# Defaults. A text of MAX_CHARS plain characters is several times the token window of the
# default model; the body limit leaves room for MAX_TEXTS such texts plus JSON overhead.
MAX_TEXTS = 64
MAX_CHARS = 10_000
MAX_BODY_BYTES = 2 * 1024 * 1024
BATCH_MAX = 32
BATCH_WAIT_MS = 5.0
MAX_QUEUE = 1024  # texts waiting for the model; beyond this, 503 instead of unbounded latency

_BODY_METHODS = {"POST", "PUT", "PATCH"}


# --------------------------------------------------------------------------------------------
# Request / response models (they also drive the OpenAPI page at /docs)


class TextItem(BaseModel):
    """One text with the caller's own id for it, answered back beside its result."""

    model_config = ConfigDict(extra="forbid")

    id: str | int = Field(description="The caller's id of the text (a string or an integer), "
                                      "returned unchanged with its result.")
    text: StrictStr

    @field_validator("id", mode="before")
    @classmethod
    def _string_or_integer(cls, value):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("must be a string or an integer")
        return value


def _item_kind(value) -> str:
    return OBJECT_FORM if isinstance(value, (dict, TextItem)) else STRING_FORM


# A text is a string, or {"id": ..., "text": ...}; the tags name the two forms in error locations.
STRING_FORM, OBJECT_FORM = "string", "object"
TextOrItem = Annotated[
    Annotated[StrictStr, Tag(STRING_FORM)] | Annotated[TextItem, Tag(OBJECT_FORM)],
    Discriminator(_item_kind),
]


class ClassifyRequest(BaseModel):
    """Body of POST /v1/classify."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"texts": ["WINNER!! Claim your free prize now", "See you at 6?"]},
            {"texts": [{"id": "msg-17", "text": "WINNER!! Claim your free prize now"}]},
        ]},
    )

    texts: list[TextOrItem] = Field(
        min_length=1,
        description='Messages to classify, in order: strings, or objects {"id": ..., "text": ...} '
                    "whose id comes back with the result.")
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        strict=True,
        description="2-class runs only: probability of the second (positive) label at or above "
        "which it is chosen. Default: the run's own threshold, else argmax.",
    )
    truncate: StrictBool = Field(
        default=False,
        description="Cut texts longer than the character limit instead of rejecting them "
        "(only for runs trained with truncation).",
    )


class ClassifyResult(BaseModel):
    id: str | int | None = Field(default=None, description="The text's id, where it was sent as "
                                 '{"id": ..., "text": ...}.')
    label: str
    probabilities: dict[str, float]
    truncated: bool
    labels: list[str] | None = Field(default=None, description="Multi-label runs: every label whose "
                                     "probability reaches its threshold (the decision).")


class ClassifyResponse(BaseModel):
    results: list[ClassifyResult]
    model: str


class ErrorResponse(BaseModel):
    error: str
    status: int


_ERRORS = {
    413: {"model": ErrorResponse, "description": "Too many texts, a text too long, or body too large"},
    422: {"model": ErrorResponse, "description": "Malformed JSON or wrong field types"},
    503: {"model": ErrorResponse, "description": "Too many texts waiting for the model"},
    500: {"model": ErrorResponse, "description": "Internal error (details in the server log)"},
}


class ApiError(Exception):
    """An error with a status and a one-line message that is safe to show the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


# --------------------------------------------------------------------------------------------
# Micro-batching


@dataclass
class _Pending:
    texts: list[str]
    threshold: float | None
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters for /health and tests: how many model calls served how many texts."""

    batches: int = 0
    texts: int = 0
    requests: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list)  # last 100 batch sizes, for tests

    def record(self, n_texts: int, n_requests: int) -> None:
        self.batches += 1
        self.texts += n_texts
        self.requests += n_requests
        self.largest_batch = max(self.largest_batch, n_texts)
        self.sizes = (self.sizes + [n_texts])[-100:]


class MicroBatcher:
    """Gathers concurrent requests into one `predict` call run in a single worker thread.

    The first waiting request opens a batch; more are added until `batch_max` texts or
    `batch_wait_ms` have passed. Requests arriving while the model runs queue up and form the
    next batch, so under load batches fill without waiting. A request is never split: one larger
    than `batch_max` runs alone (predict chunks it by `batch_size`). One thread runs the model,
    so it is never called concurrently and the event loop never blocks on it.
    """

    def __init__(self, classifier, *, batch_max: int, batch_wait_ms: float, max_queue: int):
        self.classifier = classifier
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self.queued_texts = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmclassify-model")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None

    def _ensure_started(self) -> None:
        # Started lazily on the running loop: the app may be driven by uvicorn (lifespan), by a
        # test client that opens a fresh loop per request, or by httpx's ASGI transport.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self.queued_texts = 0
            self._worker = loop.create_task(self._run(), name="llmclassify-batcher")

    async def submit(self, texts: list[str], threshold: float | None) -> list:
        """Score `texts`; returns predictions in order. Raises ApiError(503) when overloaded."""
        self._ensure_started()
        if self.queued_texts + len(texts) > self.max_queue:
            raise ApiError(503, f"server busy: more than {self.max_queue} texts waiting; retry shortly")
        fut = asyncio.get_running_loop().create_future()
        self.queued_texts += len(texts)
        self._queue.put_nowait(_Pending(texts, threshold, fut))
        return await fut

    async def _run(self) -> None:
        queue = self._queue
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            batch, n = [first], len(first.texts)
            deadline = time.monotonic() + self.batch_wait
            while n < self.batch_max:
                try:
                    if queue.empty():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        item = await asyncio.wait_for(queue.get(), left)
                    else:
                        item = queue.get_nowait()
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if n + len(item.texts) > self.batch_max:
                    carry = item  # opens the next batch; never split a request
                    break
                batch.append(item)
                n += len(item.texts)
            self.queued_texts -= n
            live = [p for p in batch if not p.future.done()]  # skip clients that went away
            if not live:
                continue
            try:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._predict, [(p.texts, p.threshold) for p in live]
                )
                self.stats.record(sum(len(p.texts) for p in live), len(live))
            except asyncio.CancelledError:
                for p in live:
                    if not p.future.done():
                        p.future.cancel()
                raise
            except Exception as exc:  # the model failed: keep serving, fail only the culprit
                if len(live) == 1:
                    if not live[0].future.done():
                        live[0].future.set_exception(exc)
                    continue
                # One request's texts must not fail the others batched with it: retry alone.
                for p in live:
                    try:
                        out = await asyncio.get_running_loop().run_in_executor(
                            self._executor, self._predict, [(p.texts, p.threshold)]
                        )
                    except asyncio.CancelledError:
                        for q in live:
                            if not q.future.done():
                                q.future.cancel()
                        raise
                    except Exception as one:
                        if not p.future.done():
                            p.future.set_exception(one)
                    else:
                        if not p.future.done():
                            p.future.set_result(out[0])
                continue
            for p, out in zip(live, outputs):
                if not p.future.done():
                    p.future.set_result(out)

    def _predict(self, jobs: list[tuple[list[str], float | None]]) -> list[list]:
        """Worker thread: one predict call per distinct threshold (usually exactly one)."""
        groups: dict[float | None, list[int]] = {}
        for i, (_, thr) in enumerate(jobs):
            groups.setdefault(thr, []).append(i)
        outputs: list[list] = [[] for _ in jobs]
        for thr, idxs in groups.items():
            texts = [t for i in idxs for t in jobs[i][0]]
            preds = self.classifier.predict(texts, threshold=thr, batch_size=self.batch_max)
            if len(preds) != len(texts):
                raise RuntimeError(f"predict returned {len(preds)} results for {len(texts)} texts")
            k = 0
            for i in idxs:
                m = len(jobs[i][0])
                outputs[i] = preds[k : k + m]
                k += m
        return outputs

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        self._worker = None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# Body-size limit (pure ASGI, so it also covers chunked bodies with no Content-Length)


class BodyLimitMiddleware:
    """Rejects request bodies over `max_bytes` with 413 before the app parses them."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        too_big = _error(413, f"request body too large: the limit is {self.max_bytes} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _error(400, "invalid Content-Length header")(scope, receive, send)
            if declared > self.max_bytes:
                return await too_big(scope, receive, send)
        # Read the body here (bounded by the limit) and replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await too_big(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# --------------------------------------------------------------------------------------------
# Validation messages a person can read


def _is_item_tag(loc, i: int) -> bool:
    """Whether loc[i] names the form a text took (string / object), right after its index."""
    return loc[i] in (STRING_FORM, OBJECT_FORM) and i > 0 and isinstance(loc[i - 1], int)


def _item_form(loc) -> str | None:
    return next((loc[i] for i in range(len(loc)) if _is_item_tag(loc, i)), None)


def _where(loc) -> str:
    parts = [p for i, p in enumerate(loc) if p != "body" and not _is_item_tag(loc, i)]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _validation_message(errors) -> str:
    msgs = []
    for err in errors:
        kind, loc = err.get("type", ""), err.get("loc", ())
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            detail = ctx.get("error")
            pos = loc[-1] if loc and isinstance(loc[-1], int) else None
            at = f" at character {pos}" if pos is not None else ""
            msgs.append(f"malformed JSON{at}{': ' + str(detail) if detail else ''}")
            continue
        where = _where(loc)
        if where == "body" and kind == "missing":
            msgs.append('empty body: send a JSON object like {"texts": ["..."]}')
        elif where == "body" and kind in {"model_attributes_type", "dict_type", "model_type"}:
            msgs.append('the body must be a JSON object like {"texts": ["..."]}')
        elif kind == "missing":
            msgs.append(f"{where}: field required")
        elif kind == "extra_forbidden":
            fields = TextItem.model_fields if _item_form(loc) == OBJECT_FORM else ClassifyRequest.model_fields
            allowed = ", ".join(fields)
            msgs.append(f"{where}: unknown field (allowed: {allowed})")
        elif _item_form(loc) == STRING_FORM and kind == "string_type":  # neither a string nor an object
            msgs.append(f'{where}: must be a string or an object {{"id": ..., "text": ...}}')
        elif kind == "value_error":
            msgs.append(f"{where}: {(err.get('ctx') or {}).get('error', err.get('msg'))}")
        elif where == "texts" and kind == "too_short":
            msgs.append("texts: must hold at least one text")
        else:
            msgs.append(f"{where}: {err.get('msg', 'invalid value')}")
    # de-duplicate, keep order, bound the length of the line
    seen = list(dict.fromkeys(msgs))
    text = "; ".join(seen[:5])
    if len(seen) > 5:
        text += f"; and {len(seen) - 5} more"
    return text


# --------------------------------------------------------------------------------------------
# The app


def _model_id(info: dict) -> str:
    base = info.get("base_model") or {}
    if isinstance(base, dict):
        for key in ("name", "source", "id", "preset"):
            if base.get(key):
                return str(base[key])
    elif base:
        return str(base)
    return "llmclassify"


def _jsonable(value: Any) -> Any:
    """info() may hold paths, tuples or numpy scalars: make it plain JSON (NaN -> null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


PAGE_EXAMPLES = 6  # the page's example buttons: held-out texts of the run, at least one per class
PAGE_EXAMPLE_CLASSES = 12  # ... of the first this many classes
PAGE_EXAMPLE_CHARS = (20, 300)  # preferred lengths: a sentence or a short message, not a word or an article


def page_examples(split: dict | None, labels: list[str]) -> list[dict]:
    """Example texts for the page, `{"label", "text", "split"}`, from the run's own split: the
    first texts of each class in the test split (else validation, else train) whose length is
    within PAGE_EXAMPLE_CHARS (else its shortest), classes taken in turn. Texts the run never
    trained on where it has any; none where the run has no split.json (an export)."""
    if not split:
        return []
    name = next((s for s in ("test", "val", "train") if split[s]["texts"]), None)
    if name is None:
        return []
    texts, ids = split[name]["texts"], split[name]["labels"]
    classes = range(min(len(labels), PAGE_EXAMPLE_CLASSES))
    per_class = max(1, PAGE_EXAMPLES // len(classes))
    lo, hi = PAGE_EXAMPLE_CHARS
    picks = []
    for c in classes:
        of_class = [t for t, y in zip(texts, ids) if c in (y if isinstance(y, list) else [y])]
        fitting = [t for t in of_class if lo <= len(t.strip()) <= hi]
        picks.append((fitting or sorted(of_class, key=len))[:per_class])
    turns = ((c, p[i]) for i in range(per_class) for c, p in zip(classes, picks) if i < len(p))
    return [{"label": labels[c], "text": t, "split": name} for c, t in turns]


def served_info(classifier) -> dict:
    """What `/v1/model` tells a client: the classifier's `info()` as plain JSON, with the page's
    example texts, and without server-side paths (no run directory; a local base model by its
    file or directory name only)."""
    info = _jsonable(classifier.info())
    run_dir = getattr(classifier, "run_dir", None)  # a Predictor has one; a test's stand-in may not
    try:
        info["examples"] = page_examples(read_split(run_dir) if run_dir else None, list(classifier.labels))
    except UserError as e:  # the page shows no examples; the API serves as ever
        log.warning("no example texts for the page: %s", e)
        info["examples"] = []
    info.pop("run_dir", None)
    base = info.get("base_model")
    if isinstance(base, dict) and isinstance(base.get("source"), str):
        src = base["source"]
        if base.get("kind") in {"hf-dir", "gguf"} or os.path.isabs(src):
            base["source"] = os.path.basename(src.rstrip("/\\")) or src
    return info


def _checked_limits(**limits) -> dict:
    """`create_app`'s limits, checked (UserError naming the one that is wrong); the queue holds
    at least one full request."""
    for name, value in limits.items():
        if name == "batch_wait_ms":
            if not isinstance(value, (int, float)) or value < 0:
                raise UserError(f"serve: batch_wait_ms must be >= 0, got {value!r}")
        elif not isinstance(value, int) or value < 1:
            raise UserError(f"serve: {name} must be a positive integer, got {value!r}")
    return {**limits, "max_queue": max(limits["max_queue"], limits["max_texts"])}


def _answer_errors_in_one_line(app: FastAPI) -> None:
    """Every error `app` answers is `{"error": one line, "status": code}`: ours (ApiError), a
    request that fails validation (422), Starlette's (404, 405, ...) and anything unexpected
    (500, logged here, no detail to the client)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail), "status": exc.status_code},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal server error")


def _load_page() -> str:
    return resources.files("llmclassify").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    classifier,
    *,
    max_texts: int = MAX_TEXTS,
    max_chars: int = MAX_CHARS,
    max_body_bytes: int = MAX_BODY_BYTES,
    batch_max: int = BATCH_MAX,
    batch_wait_ms: float = BATCH_WAIT_MS,
    max_queue: int = MAX_QUEUE,
) -> FastAPI:
    """The FastAPI app serving `classifier` (a `llmclassify.predict.Predictor`: a run's
    `Classifier` or an ONNX export's `OnnxClassifier`).

    Limits: `max_texts` texts per request and `max_chars` characters per text (413 beyond,
    unless the run was trained with truncation and the request sends `"truncate": true`),
    `max_body_bytes` per request body (413). `batch_max` / `batch_wait_ms` shape micro-batches;
    `max_queue` bounds the texts waiting for the model (503 beyond).
    """
    limits = _checked_limits(max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes,
                             batch_max=batch_max, batch_wait_ms=batch_wait_ms, max_queue=max_queue)
    max_queue = limits["max_queue"]
    info = served_info(classifier)
    labels = list(classifier.labels)
    two_class = len(labels) == 2
    can_truncate = bool(info.get("truncation"))
    model_id = _model_id(info)
    page = _load_page()
    batcher = MicroBatcher(classifier, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                           max_queue=max_queue)
    started = time.time()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.aclose()
        batcher.shutdown()

    app = FastAPI(
        title="llmclassify",
        version=__version__,
        description=f"Text classifier ({', '.join(labels)}) built on {model_id}.",
        lifespan=lifespan,
    )
    app.state.classifier = classifier
    app.state.batcher = batcher
    app.state.limits = limits

    _answer_errors_in_one_line(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health():
        """Liveness plus a few serving counters."""
        s = batcher.stats
        return {"status": "ok", "model": model_id, "uptime_s": round(time.time() - started, 1),
                "queued_texts": batcher.queued_texts, "batches": s.batches, "texts": s.texts,
                "requests": s.requests, "largest_batch": s.largest_batch}

    @app.get("/v1/model")
    async def model_info():
        """Labels, base model, training metrics and pooling of the served run, plus the limits."""
        return {**info, "labels": labels, "model": model_id, "limits": limits}

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def classify(req: ClassifyRequest):
        """Classify texts. Concurrent requests are micro-batched into one model call."""
        ids = [t.id if isinstance(t, TextItem) else None for t in req.texts]
        texts = [t.text if isinstance(t, TextItem) else t for t in req.texts]
        if len(texts) > max_texts:
            raise ApiError(413, f"too many texts: {len(texts)} sent, the limit is {max_texts} per request")
        if req.threshold is not None and not (two_class or getattr(classifier, "multi_label", False)):
            raise ApiError(422, f"threshold: applies only to 2-class runs; this run has {len(labels)} labels")
        if req.truncate and not can_truncate:
            # Accept the flag only where it means something; say so rather than ignore it.
            too_long = [i for i, t in enumerate(texts) if len(t) > max_chars]
            if too_long:
                raise ApiError(413, f"texts[{too_long[0]}] has {len(texts[too_long[0]])} characters, "
                                    f"the limit is {max_chars}; this run was trained without "
                                    "truncation, so truncate is not available")
        cut = [False] * len(texts)
        for i, t in enumerate(texts):
            if t == "":
                raise ApiError(422, f"texts[{i}]: empty text")
            if not t.isascii():
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:  # a "\ud800" escape: valid JSON, not valid text
                    raise ApiError(422, f"texts[{i}]: not valid Unicode (lone surrogate at character "
                                        f"{e.start})") from None
            if len(t) > max_chars:
                if req.truncate:
                    cut[i] = True
                else:
                    hint = ' (or send "truncate": true)' if can_truncate else ""
                    raise ApiError(413, f"texts[{i}] has {len(t)} characters, the limit is "
                                        f"{max_chars}; send shorter texts{hint}")
        if any(cut):
            texts = [t[:max_chars] if c else t for t, c in zip(texts, cut)]
        try:
            preds = await batcher.submit(texts, req.threshold)
        except ApiError:
            raise
        except UserError as exc:
            log.warning("classify rejected: %s", exc)
            raise ApiError(422, str(exc).splitlines()[0] if str(exc) else "invalid input") from None
        except Exception:
            log.exception("classify failed for a batch")
            raise ApiError(500, "internal server error: the model failed on this request") from None
        return {
            "results": [  # an id or labels that are None are left out (response_model_exclude_none)
                {"id": i, "label": p.label, "probabilities": {k: float(v) for k, v in p.probabilities.items()},
                 "truncated": bool(p.truncated) or c, "labels": p.labels}
                for i, p, c in zip(ids, preds, cut)
            ],
            "model": model_id,
        }

    # A raw ASGI middleware on the app itself, so callers still get a FastAPI object.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    return app


def run(run_dir, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
        dtype: str = "float32", quantize: str | None = None, **limits) -> None:
    """Load the run (or ONNX export) at `run_dir` and serve it with uvicorn until interrupted.

    `dtype` / `quantize` go to `predict.open_classifier`; `limits` are `create_app`'s keyword arguments.
    """
    import uvicorn

    from llmclassify.predict import open_classifier

    classifier = open_classifier(run_dir, dtype=dtype, quantize=quantize)
    app = create_app(classifier, **limits)
    log.info("serving %s on http://%s:%d", run_dir, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1,
                timeout_keep_alive=5, server_header=False)


def main(argv: list[str] | None = None) -> None:
    """`python -m llmclassify.serve RUN [options]`: `llmclassify serve`, through the CLI's one parser."""
    from .cli import main as cli_main

    raise SystemExit(cli_main(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
