"""``slide serve``: a trained text model behind an HTTP JSON API and a search page.

An ASGI application (Starlette, run by uvicorn; ``pip install 'slide[serve]'``):

* ``POST /predict`` ``{"texts": ["black shoes", ...], "k": 5, "mode": "lsh"}`` ->
  ``{"predictions": [{"labels": [...], "scores": [...]}, ...], "k": 5, "mode": "lsh"}``
  (scores are the output layer's logits, best first; ``mode`` is optional);
* ``GET /health``, ``GET /info`` (the model, its labels, parameters and the request limits);
* ``GET /`` a search page: a query box and the top labels as you type.

The model is loaded once and only read. Requests are parsed and checked on the event loop; the
texts of all requests waiting at a moment go to the model as one batch (:class:`Batcher`, one
thread), so Numba's thread pool is never entered from two threads at once and a burst of
queries costs one featurisation and one kernel call. A bad request is a 4xx with a message
saying what was expected (never a 500): malformed JSON, wrong types, unknown keys, an empty or
over-long text, too many texts, k or mode out of range, a body over the size limit.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import queue
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import ParameterError, SlideError

MODES = ("lsh", "exact")
# 'auto' serves LSH when its top label is exact prediction's on at least this share of the rows
# the model checked at the end of training (state.lsh_check)
LSH_AGREEMENT = 0.9


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_texts: int = 1000  # texts per request
    max_text_chars: int = 10_000  # characters per text (a query, or a page of description)
    max_k: int = 100  # labels per text
    max_body_bytes: int = 2 << 20  # bytes of a request body

    def to_dict(self) -> dict:
        return {"max_texts": self.max_texts, "max_text_chars": self.max_text_chars, "max_k": self.max_k,
                "max_body_bytes": self.max_body_bytes}


class BadRequest(Exception):
    """A request the server refuses, with its HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- the model
class Batcher:
    """One thread that runs the model on the texts of every request waiting, as one batch.

    ``predict(texts, k, mode)`` returns a Future of (labels, scores) lists for those texts; the
    thread groups waiting requests by mode, featurises and predicts them together at the largest
    k asked (``predict_topk(texts, k, mode)`` -> (labels, scores), each (n, k)), and hands each
    request its rows cut to its own k."""

    def __init__(self, predict_topk, *, max_batch: int = 512):
        self.predict_topk = predict_topk
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="slide-batcher", daemon=True)
        self._thread.start()
        self.batches = 0  # batches run, for /info
        self.texts = 0

    def predict(self, texts: list[str], k: int, mode: str) -> Future:
        fut: Future = Future()
        self._queue.put((texts, k, mode, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            waiting, n = [item], len(item[0])
            while n < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # close after this batch
                    break
                waiting.append(nxt)
                n += len(nxt[0])
            for mode in MODES:
                group = [w for w in waiting if w[2] == mode]
                if group:
                    self._run(group, mode)

    def _run(self, group, mode: str) -> None:
        texts = [t for w in group for t in w[0]]
        k = max(w[1] for w in group)
        try:
            labels, scores = self.predict_topk(texts, k, mode)
        except Exception as e:  # handed to the requests; the thread keeps serving
            for w in group:
                w[3].set_exception(e)
            return
        self.batches += 1
        self.texts += len(texts)
        row = 0
        for w_texts, w_k, _, fut in group:
            out = []
            for i in range(row, row + len(w_texts)):
                keep = [j for j in range(w_k) if _is_label(labels[i, j])]
                out.append({"labels": [_plain(labels[i, j]) for j in keep],
                            "scores": [round(float(scores[i, j]), 6) for j in keep]})
            row += len(w_texts)
            fut.set_result(out)


def _is_label(v) -> bool:
    return v is not None and not (isinstance(v, (int, np.integer)) and v < 0)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


# ----------------------------------------------------------------------------- requests
def parse_predict(body: bytes, limits: Limits, n_labels: int, default_mode: str) -> tuple[list[str], int, str]:
    """(texts, k, mode) of a /predict body, or BadRequest saying what is wrong."""
    if len(body) > limits.max_body_bytes:
        raise BadRequest(413, f"the request body has {len(body):,} bytes; at most {limits.max_body_bytes:,}.")
    try:
        req = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(400, f"the request body is not valid JSON ({e}); expected an object such as "
                              '{"texts": ["black shoes"], "k": 5}.') from None
    except RecursionError:  # "[[[[...": the decoder recurses once per level
        raise BadRequest(400, "the request body nests JSON arrays or objects too deeply to read; expected an "
                              'object such as {"texts": ["black shoes"], "k": 5}.') from None
    if not isinstance(req, dict):
        raise BadRequest(422, f"the request body is a JSON {type(req).__name__}; expected an object such as "
                              '{"texts": ["black shoes"], "k": 5}.')
    unknown = sorted(set(req) - {"texts", "k", "mode"})
    if unknown:
        raise BadRequest(422, f"unknown field(s) {', '.join(map(repr, unknown))}; expected 'texts', and optionally "
                              "'k' and 'mode'.")
    if "texts" not in req:
        raise BadRequest(422, "the field 'texts' is missing; expected a list of strings.")
    texts = req["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f"'texts' is a JSON {_json_type(texts)}; expected a list of strings.")
    if not texts:
        raise BadRequest(422, "'texts' is empty; expected at least one string.")
    if len(texts) > limits.max_texts:
        raise BadRequest(413, f"'texts' holds {len(texts):,} texts; at most {limits.max_texts:,} per request.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(422, f"texts[{i}] is a JSON {_json_type(t)}; expected a string.")
        if not t.strip():
            raise BadRequest(422, f"texts[{i}] is empty; expected a query or a text.")
        if len(t) > limits.max_text_chars:
            raise BadRequest(413, f"texts[{i}] has {len(t):,} characters; at most {limits.max_text_chars:,}.")
    max_k = min(limits.max_k, n_labels)
    k = req.get("k", min(5, n_labels))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise BadRequest(422, f"'k' is {json.dumps(k)[:40]}; expected an int in [1, {max_k}].")
    mode = req.get("mode", default_mode)
    if mode not in MODES:
        raise BadRequest(422, f"'mode' is {json.dumps(mode)[:40]}; expected 'lsh' or 'exact'.")
    return texts, k, mode


def _json_type(v) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(v), type(v).__name__)


async def _read_body(request, limit: int) -> bytes:
    """The body, refused once it passes ``limit`` bytes (a huge upload is not read to its end)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the request body has {int(declared):,} bytes; at most {limit:,}.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the request body has more than {limit:,} bytes; at most {limit:,}.")
        chunks.append(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- the application
def choose_mode(model, mode: str) -> tuple[str, str]:
    """(mode, why): 'auto' is LSH where the model's own check says LSH finds exact prediction's
    top label (on >= LSH_AGREEMENT of its training rows), else exact."""
    has_lsh = any(s.lsh for s in model.state_.specs)
    if mode == "exact":
        return "exact", "asked for"
    if not has_lsh:
        return "exact", "the model has no LSH layer (its output layer is small enough to compute whole)"
    if mode == "lsh":
        return "lsh", "asked for"
    check = model.state_.lsh_check
    if check is None:
        return "exact", "the model holds no record of how LSH prediction compares with exact (trained before the check)"
    share = check["top1_agreement"]
    if share >= LSH_AGREEMENT:
        return "lsh", (f"LSH prediction's top label is exact prediction's on {share:.1%} of {check['rows']:,} training "
                       f"rows (>= {LSH_AGREEMENT:.0%})")
    return "exact", (f"LSH prediction's top label is exact prediction's on only {share:.1%} of {check['rows']:,} "
                     f"training rows (< {LSH_AGREEMENT:.0%}): the hash tables miss labels exact scoring ranks first; "
                     "a request may still ask for \"mode\": \"lsh\"")


def model_info(model, path, mode: str, limits: Limits) -> dict:
    """What GET /info answers: the model, its labels, its parameters, the request limits."""
    state = model.state_
    classes = model.classes_
    text = model._text
    return {
        "model": None if path is None else str(path),
        "n_labels": int(model.n_labels_),
        "labels_preview": [_plain(v) for v in classes[:20].tolist()],
        "n_features": int(model.n_features_in_),
        "text_features": None if text is None else {k: (list(v) if isinstance(v, tuple) else v)
                                                    for k, v in text.settings.items()},
        "layers": [{"n_in": s.n_in, "n_out": s.n_out, "lsh": s.lsh} for s in state.specs],
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.get_params().items()},
        "mode": mode,
        "modes": list(MODES) if any(s.lsh for s in state.specs) else ["exact"],
        "lsh_check": state.lsh_check,
        "limits": limits.to_dict(),
    }


def create_app(model, *, path=None, mode: str = "auto", limits: Limits | None = None, max_batch: int = 512):
    """The ASGI application serving ``model`` (a fitted :class:`slide.SlideClassifier` trained on
    text). ``mode`` is the default prediction mode: 'lsh', 'exact', or 'auto' (:func:`choose_mode`;
    'lsh' falls back to 'exact' on a model without an LSH layer)."""
    if importlib.util.find_spec("starlette") is None:  # the optional extra
        raise ParameterError("slide serve needs Starlette and uvicorn: pip install 'slide[serve]'.")
    if getattr(model, "_text", None) is None:
        raise ParameterError("slide serve needs a model trained on text (slide train data.jsonl ..., or "
                             "SlideClassifier().fit(list_of_strings, labels)); this one was trained on feature vectors.")
    if mode not in ("auto",) + MODES:
        raise ParameterError(f"The 'mode' of slide serve must be 'auto', 'lsh' or 'exact'. Got {mode!r} instead.")
    limits = limits or Limits()
    modes = MODES if any(s.lsh for s in model.state_.specs) else ("exact",)
    mode, why = choose_mode(model, mode)
    info = {**model_info(model, path, mode, limits), "mode_reason": why}
    return build_app(lambda texts, k, m: model.predict_topk(texts, k=k, mode=m), info,
                     n_labels=int(model.n_labels_), mode=mode, modes=modes, limits=limits, max_batch=max_batch)


def build_app(predict_topk, info: dict, *, n_labels: int, mode: str, modes=MODES, limits: Limits | None = None,
              max_batch: int = 512):
    """The application around any ``predict_topk(texts, k, mode)`` -> (labels, scores) (a slide
    model through :func:`create_app`; the latency benchmark serves a label tree the same way):
    ``info`` is what GET /info answers, ``modes`` the modes a request may name (others fall back
    to ``mode``)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    limits = limits or Limits()
    batcher = Batcher(predict_topk, max_batch=max_batch)
    page = resources.files("slide").joinpath("search.html").read_text(encoding="utf-8")
    started = time.time()

    def error(e: BadRequest):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    async def predict(request):
        t0 = time.perf_counter()
        try:
            body = await _read_body(request, limits.max_body_bytes)
            texts, k, req_mode = parse_predict(body, limits, n_labels, mode)
        except BadRequest as e:
            return error(e)
        if req_mode not in modes:
            req_mode = mode
        try:
            preds = await asyncio.wrap_future(batcher.predict(texts, k, req_mode))
        except SlideError as e:  # input the model refuses: still the client's request
            return error(BadRequest(422, str(e)))
        ms = (time.perf_counter() - t0) * 1e3
        return JSONResponse({"predictions": preds, "k": k, "mode": req_mode, "ms": round(ms, 3)})

    async def health(request):
        return JSONResponse({"status": "ok", "uptime_seconds": round(time.time() - started, 1)})

    async def get_info(request):
        return JSONResponse({**info, "served": {"batches": batcher.batches, "texts": batcher.texts}})

    async def index(request):
        return HTMLResponse(page)

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        what = (f"{request.url.path} does not take {request.method}" if status == 405 else
                f"no such endpoint: {request.method} {request.url.path}")
        return JSONResponse({"error": f"{what}; the endpoints are POST /predict, GET /health, GET /info and GET / "
                                      "(the search page)."}, status_code=status)

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health),
                            Route("/info", get_info), Route("/", index)],
                    exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
    app.state.batcher, app.state.info = batcher, info
    return app


def serve(model_path, *, host: str = "127.0.0.1", port: int = 8000, mode: str = "auto", n_jobs=None,
          limits: Limits | None = None, log_level: str = "info") -> None:
    """Load the model at ``model_path`` once and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ParameterError("slide serve needs Starlette and uvicorn: pip install 'slide[serve]'.") from None
    from . import load

    model = load(model_path, optimizer_state=False)  # prediction only: the Adam moments stay on disk
    if n_jobs is not None:
        model.set_params(n_jobs=n_jobs)
    app = create_app(model, path=model_path, mode=mode, limits=limits)
    print(f"slide serve: default mode {app.state.info['mode']}: {app.state.info['mode_reason']}", file=sys.stderr)
    # warm-up queries: the kernels load from Numba's cache before the first client waits
    for m in (("lsh", "exact") if any(s.lsh for s in model.state_.specs) else ("exact",)):
        model.predict_topk(["warm up"], k=1, mode=m)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


__all__ = ["create_app", "serve", "Limits", "Batcher", "parse_predict", "BadRequest"]
