"""`slide serve`: the HTTP JSON API over a text model (slide.serve).

In-process through Starlette's test client (the bad-request matrix, batching, the page), and a
real `slide serve` process on loopback: every bad request a 4xx, the server still answering
afterwards, concurrent clients each getting their own answers."""

import http.client
import json
import threading

import numpy as np
import pytest

import slide
from textdata import make_texts, slide_server

pytest.importorskip("starlette")
pytest.importorskip("starlette.testclient")
from starlette.testclient import TestClient  # noqa: E402

from slide.serve import Limits, create_app  # noqa: E402

MODEL = dict(hidden_layer_sizes=(32,), epochs=8, batch_size=32, learning_rate=0.01, n_jobs=1, random_state=0,
             lsh_layers="output", active_size=4, min_active=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    texts, labels = make_texts(600, seed=1)
    clf = slide.SlideClassifier(**MODEL).fit(texts, labels)
    path = tmp_path_factory.mktemp("serve") / "model.npz"
    clf.save(path)
    return path


@pytest.fixture(scope="module")
def client(model_file):
    app = create_app(slide.load(model_file), path=model_file, mode="lsh",
                     limits=Limits(max_texts=50, max_text_chars=2000, max_k=6))
    with TestClient(app) as c:
        yield c


def _ok(client):
    r = client.post("/predict", json={"texts": ["black leather shoes"], "k": 2})
    assert r.status_code == 200, r.text
    return r.json()


def test_predict_answers_labels_and_scores(client, model_file):
    body = _ok(client)
    assert body["mode"] == "lsh" and body["k"] == 2
    (p,) = body["predictions"]
    assert p["labels"][0] == "shoes" and len(p["scores"]) == len(p["labels"]) <= 2
    assert p["scores"] == sorted(p["scores"], reverse=True)
    texts = make_texts(20, seed=9)[0]
    r = client.post("/predict", json={"texts": texts, "k": 3, "mode": "exact"}).json()
    ids, scores = slide.load(model_file).predict_topk(texts, k=3, mode="exact")
    assert [q["labels"] for q in r["predictions"]] == ids.tolist()
    assert np.allclose([q["scores"] for q in r["predictions"]], scores, atol=1e-5)


def test_health_info_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["n_labels"] == 8 and info["modes"] == ["lsh", "exact"] and info["limits"]["max_k"] == 6
    assert info["text_features"]["ngram_range"] == [1, 2] and info["params"]["random_state"] == 0
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and 'id="q"' in page.text


BAD = [
    # (body bytes or JSON value, expected status, fragment of the message)
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not valid JSON"),
    (b"", 400, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nests JSON arrays or objects too deeply"),  # was a 500
    (b'{"texts": ' + b"[" * 100_000, 400, "too deeply"),
    ([1, 2], 422, "JSON list; expected an object"),
    ("texts", 422, "JSON str"),
    ({}, 422, "'texts' is missing"),
    ({"texts": "black shoes"}, 422, "'texts' is a JSON string"),
    ({"texts": []}, 422, "'texts' is empty"),
    ({"texts": [None]}, 422, "texts[0] is a JSON null"),
    ({"texts": ["ok", 5]}, 422, "texts[1] is a JSON number"),
    ({"texts": ["ok", ["nested"]]}, 422, "texts[1] is a JSON list"),
    ({"texts": ["   "]}, 422, "texts[0] is empty"),
    ({"texts": ["x" * 2001]}, 413, "texts[0] has 2,001 characters"),
    ({"texts": ["shoes"] * 51}, 413, "holds 51 texts"),
    ({"texts": ["shoes"], "k": 0}, 422, "'k' is 0"),
    ({"texts": ["shoes"], "k": 7}, 422, "expected an int in [1, 6]"),
    ({"texts": ["shoes"], "k": -3}, 422, "'k' is -3"),
    ({"texts": ["shoes"], "k": 2.5}, 422, "'k' is 2.5"),
    ({"texts": ["shoes"], "k": "5"}, 422, "'k' is \"5\""),
    ({"texts": ["shoes"], "k": True}, 422, "'k' is true"),
    ({"texts": ["shoes"], "k": 10 ** 30}, 422, "'k' is"),
    ({"texts": ["shoes"], "mode": "fast"}, 422, "'mode' is \"fast\""),
    ({"texts": ["shoes"], "top": 5}, 422, "unknown field(s) 'top'"),
    ({"texts": ["x" * (3 << 20)]}, 413, "bytes; at most"),
]


@pytest.mark.parametrize("body,status,fragment", BAD, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD)])
def test_bad_requests_get_a_4xx_with_a_message(client, body, status, fragment):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    _ok(client)  # and the server still answers


def test_wrong_methods_and_paths(client):
    r = client.get("/predict")
    assert r.status_code == 405 and "does not take GET" in r.json()["error"]
    r = client.post("/nowhere", json={})
    assert r.status_code == 404 and "POST /predict" in r.json()["error"]
    _ok(client)


def test_auto_mode_follows_the_models_own_lsh_check(model_file, tmp_path):
    from slide.serve import choose_mode

    model = slide.load(model_file)
    check = model.state_.lsh_check  # measured at the end of fit, saved in the file
    assert check["rows"] == 600 and 0 <= check["top1_agreement"] <= 1 and model.timings_["lsh_check"] > 0
    model.state_.lsh_check = {"rows": 600, "top1_agreement": 0.97}
    assert choose_mode(model, "auto")[0] == "lsh"
    model.state_.lsh_check = {"rows": 600, "top1_agreement": 0.10}
    mode, why = choose_mode(model, "auto")
    assert mode == "exact" and "10.0% of 600 training rows" in why
    with TestClient(create_app(model)) as c:
        info = c.get("/info").json()
        assert info["mode"] == "exact" and "10.0%" in info["mode_reason"]
        assert c.post("/predict", json={"texts": ["shoes"]}).json()["mode"] == "exact"
        assert c.post("/predict", json={"texts": ["shoes"], "mode": "lsh"}).json()["mode"] == "lsh"
    model.save(tmp_path / "m.npz")
    assert slide.load(tmp_path / "m.npz").state_.lsh_check == {"rows": 600, "top1_agreement": 0.10}


def test_a_vector_model_is_refused():
    clf = slide.SlideClassifier(**{**MODEL, "lsh_layers": "none"}).fit(np.eye(8, dtype=np.float32), np.arange(8))
    with pytest.raises(slide.errors.ParameterError, match="trained on text"):
        create_app(clf)


def test_requests_waiting_together_are_one_batch(model_file):
    app = create_app(slide.load(model_file))
    batcher = app.state.batcher
    texts = make_texts(64, seed=3)[0]
    gate = threading.Event()
    real = batcher.predict_topk

    def slow_first(*a):  # hold the first batch until every request is queued behind it
        gate.wait(10)
        return real(*a)

    batcher.predict_topk = slow_first
    futures = [batcher.predict([t], 2, "lsh") for t in texts]
    gate.set()
    results = [f.result(timeout=60) for f in futures]
    ids = slide.load(model_file).predict_topk(texts, k=2, mode="lsh")[0]
    assert [r[0]["labels"] for r in results] == [[v for v in row if v is not None] for row in ids.tolist()]
    assert batcher.batches < len(texts)  # 64 requests in fewer batches
    batcher.close()


# ----------------------------------------------------------------------------- a real server process
@pytest.fixture(scope="module")
def server(model_file):
    pytest.importorskip("uvicorn")
    with slide_server(model_file, "--max_k", "6", "--max_texts", "50", "--max_text_chars", "2000") as running:
        yield running


def _request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_real_server_survives_the_bad_request_matrix(server):
    port, proc = server
    for body, status, fragment in BAD:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        code, out = _request(port, "POST", "/predict", raw, {"Content-Type": "application/json"})
        assert code == status and fragment in json.loads(out)["error"], (body, code, out)
    # a body that announces more than the limit is refused before it is read
    code, out = _request(port, "POST", "/predict", b"{}", {"Content-Length": str(10 << 20)})
    assert code == 413 and "at most" in json.loads(out)["error"]
    code, out = _request(port, "POST", "/predict", json.dumps({"texts": ["black shoes"], "k": 2}).encode())
    assert code == 200 and json.loads(out)["predictions"][0]["labels"][0] == "shoes"
    assert proc.poll() is None


def test_real_server_concurrent_clients(server, model_file):
    port, _ = server
    texts = make_texts(96, seed=11)[0]
    expect = slide.load(model_file).predict_topk(texts, k=3, mode="lsh")[0].tolist()
    got = [None] * len(texts)

    def client(i):
        code, out = _request(port, "POST", "/predict", json.dumps({"texts": [texts[i]], "k": 3}).encode())
        got[i] = (code, json.loads(out)["predictions"][0]["labels"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(g[0] == 200 for g in got)
    assert [g[1] for g in got] == [[v for v in row if v is not None] for row in expect]


# ----------------------------------------------------------------------------- any body at all
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=12)
_modes = st.sampled_from(["lsh", "exact", "LSH", ""])
_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"texts": st.lists(st.one_of(st.text(max_size=40), _json), max_size=5)},
                          optional={"k": _json | st.integers(-5, 20), "mode": _json | _modes})
    .map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_body_is_answered_never_a_500(client, body):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400, 413, 422), (body, r.status_code, r.text)
    assert ("predictions" if r.status_code == 200 else "error") in r.json()


def test_serve_command_errors_are_one_line(tmp_path, capsys):
    from slide.cli import main

    clf = slide.SlideClassifier(**{**MODEL, "lsh_layers": "none"}).fit(np.eye(8, dtype=np.float32), np.arange(8))
    clf.save(tmp_path / "vec.npz")
    for args, fragment in [([str(tmp_path / "vec.npz")], "needs a model trained on text"),
                           ([str(tmp_path / "missing.npz")], "missing.npz"),
                           ([str(tmp_path / "vec.npz"), "--port", "70000"], "a port in [1, 65535]"),
                           ([str(tmp_path / "vec.npz"), "--max_k", "0"], "--max_k must be a positive int"),
                           ([str(tmp_path / "vec.npz"), "--n_jobs", "0"], "n_jobs")]:
        assert main(["serve", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("slide: error:") and fragment in err[-1], err
