"""Models that survive: SIGKILL during training and during a save, fresh-process prediction,
the numerical and memory guards, and the errors of a bad ``--resume``.

Subprocesses run ``python -m slide.cli`` (as tests/test_cli.py does) on small generated files;
a process start costs ~2.5 s (Numba's typed lists compile on first use), so the file starts as
few as it can: the killed run is shared by the resume tests, and the save loop runs in forked
children of one helper process.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import slide
from slide import (
    DataFormatError,
    NotFittedError,
    ParameterError,
    SlideClassifier,
    SlideError,
    TrainingError,
)
from slide.cli import main
from slide.datasets import make_extreme
from slide.memory import ResourceError, fmt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")

# 400 points / 16 = 25 batches per epoch, 16 epochs: ~400 steps, a checkpoint every 10
RUN_ARGS = ["--hidden_layer_sizes", "32", "--lsh_layers", "output", "--epochs", "16", "--batch_size", "16",
            "--learning_rate", "0.01", "--n_jobs", "1", "--random_state", "0", "--verbose", "0",
            "--checkpoint_every", "10"]
WAIT_S = 60  # upper bound on any wait for a subprocess (they take seconds)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slide.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(cond, proc, what):
    """Poll ``cond()`` every few ms until true; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the process ended (code {proc.returncode}) before {what}:\n{err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def sigkill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL, "the process finished before it could be killed"


def assert_same_model(a: SlideClassifier, b: SlideClassifier, Xt):
    """Bit-identical weights, optimiser moments and predictions."""
    for name in ("W", "b", "mW", "vW", "mb", "vb"):
        for x, y in zip(getattr(a.state_.net, name), getattr(b.state_.net, name), strict=True):
            assert np.array_equal(x, y), name
    for x, y in zip(a.state_.lsh.buckets, b.state_.lsh.buckets, strict=True):
        assert np.array_equal(x, y)
    la, sa = a.predict_topk(Xt, k=5)
    lb, sb = b.predict_topk(Xt, k=5)
    assert np.array_equal(la, lb) and np.array_equal(sa, sb)
    assert np.array_equal(a.predict_topk(Xt, k=5, mode="lsh")[0], b.predict_topk(Xt, k=5, mode="lsh")[0])


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    X, Y, Xt, Yt = make_extreme(400, 2000, 500, n_test=100, label_power=0.6, random_state=3)
    slide.save_xmc(d / "train.txt", X, Y)
    slide.save_xmc(d / "test.txt", Xt, Yt)
    X2, Y2, _, _ = make_extreme(400, 2000, 500, n_test=1, label_power=0.6, random_state=4)
    slide.save_xmc(d / "other.txt", X2, Y2)  # same dimensions, other points
    return d


def cli_train(files, out, *extra):
    proc = cli("train", files / "train.txt", "--out", out, *RUN_ARGS, *extra)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err


@pytest.fixture(scope="module")
def warm_kernels(files, tmp_path_factory):
    """Every run compared bit for bit must execute the same machine code. Numba's code for a
    kernel compiled in this process can differ in its float rounding from the same kernel loaded
    from the on-disk cache (seen on a cold cache: the pytest process compiled, the subprocesses
    loaded, and results drifted by 1e-7). So every compared run is a subprocess, started after
    this one has compiled (and cached) whatever the command line needs."""
    cli_train(files, tmp_path_factory.mktemp("warm") / "run", "--epochs", "1")


@pytest.fixture(scope="module")
def reference(files, warm_kernels, tmp_path_factory):
    """The uninterrupted run (same arguments)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    cli_train(files, out)
    assert not (out / "checkpoint.npz").exists()  # a finished run drops its checkpoint
    return out


@pytest.fixture(scope="module")
def killed_run(files, warm_kernels, tmp_path_factory):
    """A run folder whose training was SIGKILLed right after its first checkpoint."""
    out = tmp_path_factory.mktemp("killed") / "run"
    proc = cli("train", files / "train.txt", "--out", out, *RUN_ARGS)
    wait_for(lambda: (out / "checkpoint.npz").exists(), proc, "the first checkpoint")
    sigkill(proc)
    assert not (out / "model.npz").exists() and not (out / "metrics.json").exists()
    assert {"run.json", "checkpoint.npz"} <= set(os.listdir(out))
    return out


@pytest.fixture
def killed_copy(killed_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(killed_run, dst)
    return dst


@pytest.fixture(scope="module")
def model(files, tmp_path_factory):
    X, Y = slide.load_xmc(files / "train.txt")
    return SlideClassifier(hidden_layer_sizes=(32,), lsh_layers="output", epochs=2, batch_size=32,
                           n_jobs=1, random_state=0).fit(X, Y)


# ----------------------------------------------------------------------------- SIGKILL in training
def test_sigkill_during_training_then_resume_equals_uninterrupted_run(files, killed_copy, reference):
    out = killed_copy
    ckpt = out / "checkpoint.npz"
    first = slide.load(ckpt)
    assert 0 < first.state_.step < 400 and first.state_.progress is not None and not first.state_.progress.done

    # resume in a subprocess and SIGKILL that one too, once it has replaced the checkpoint
    inode = ckpt.stat().st_ino
    proc = cli("train", "--resume", out)

    def replaced():
        try:
            return ckpt.stat().st_ino != inode  # atomic replace: a new file
        except FileNotFoundError:
            return False

    wait_for(replaced, proc, "a checkpoint of the resumed run")
    sigkill(proc)
    second = slide.load(ckpt)
    assert second.state_.step > first.state_.step

    # leftover temporary files of a kill during a checkpoint write do not matter
    (out / ".checkpoint.npz.leftover.tmp").write_bytes(b"half a checkpoint")
    proc = cli("train", "--resume", out)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert f"Resuming {out} from epoch" in err
    assert not ckpt.exists()  # the finished run drops its checkpoint

    Xt, _ = slide.load_xmc(files / "test.txt")
    got, want = slide.load(out / "model.npz"), slide.load(reference / "model.npz")
    assert_same_model(got, want, Xt)
    assert [r["loss"] for r in got.history_] == [r["loss"] for r in want.history_]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 17))
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 16


# ----------------------------------------------------------------------------- SIGKILL in a save
# One helper process loads the two models once (the slow part), then forks a child per round
# that saves them alternately to the same path until the test SIGKILLs it.
SAVER = r"""
import os, sys
import slide
a, b = slide.load(sys.argv[1]), slide.load(sys.argv[2])
target = sys.argv[3]
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        i = 0
        while True:
            (a if i % 2 == 0 else b).save(target)
            i += 1
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
"""


def test_sigkill_during_save_leaves_a_loadable_model(files, tmp_path):
    X, Y, _, _ = make_extreme(200, 10_000, 300, n_test=1, random_state=5)  # ~4 MB files: saves take ms
    kw = dict(hidden_layer_sizes=(32,), epochs=1, batch_size=32, n_jobs=1)
    a = SlideClassifier(random_state=0, **kw).fit(X, Y)
    b = SlideClassifier(random_state=1, **kw).fit(X, Y)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    target = tmp_path / "m.npz"
    a.save(target)  # the first good save
    expect = {name: m.predict_topk(X[:50], k=5)[0] for name, m in (("a", a), ("b", b))}

    def which(m):
        """'a' or 'b' if every weight is that model's (never a mix)."""
        for name, ref in (("a", a), ("b", b)):
            if all(np.array_equal(x, y) for x, y in zip(m.coefs_ + m.intercepts_, ref.coefs_ + ref.intercepts_, strict=True)):
                return name
        pytest.fail("the loaded model is neither of the saved ones")

    helper = subprocess.Popen([sys.executable, "-c", SAVER, tmp_path / "a.npz", tmp_path / "b.npz", target],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert helper.stdout.readline().strip() == "ready"
        rng = random.Random(0)
        seen, mid_write = set(), 0
        for round_no in range(8):
            helper.stdin.write("go\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline())
            tmp_before = {n for n in os.listdir(tmp_path) if n.endswith(".tmp")}
            if round_no % 2 == 0:  # at a random moment
                time.sleep(rng.uniform(0.005, 0.15))
            else:  # while a temporary file is being written
                deadline = time.monotonic() + WAIT_S
                while not ({n for n in os.listdir(tmp_path) if n.endswith(".tmp")} - tmp_before):
                    assert time.monotonic() < deadline
            os.kill(pid, signal.SIGKILL)
            status = int(helper.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            mid_write += bool({n for n in os.listdir(tmp_path) if n.endswith(".tmp")} - tmp_before)
            m = slide.load(target)
            name = which(m)
            seen.add(name)
            assert np.array_equal(m.predict_topk(X[:50], k=5)[0], expect[name])
    finally:
        helper.stdin.close()
        helper.wait(timeout=WAIT_S)
    assert mid_write >= 1, "no kill landed during a write"
    # left-over temporary files break neither loading nor the next save
    a.save(target)
    assert np.array_equal(slide.load(target).predict_topk(X[:50], k=5)[0], expect["a"])


def test_corrupted_or_truncated_model_file_names_the_problem(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    raw = path.read_bytes()
    w = model.coefs_[0].tobytes()
    at = raw.find(w[:256])  # np.savez stores arrays uncompressed
    assert at > 0
    flipped = bytearray(raw)
    flipped[at + len(w) // 2] ^= 0x40
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) - 100])
    for name in ("flip.npz", "cut.npz"):
        with pytest.raises(DataFormatError) as e:
            slide.load(tmp_path / name)
        assert name in str(e.value) and re.search("checksum|corrupt", str(e.value)), str(e.value)


# ----------------------------------------------------------------------------- fresh process
PREDICTOR = r"""
import sys
import numpy as np
import slide
m = slide.load(sys.argv[1])
X, _ = slide.load_xmc(sys.argv[2])
labels, scores = m.predict_topk(X, k=5)
np.savez(sys.argv[3], labels=labels, scores=scores, lsh=m.predict_topk(X, k=5, mode="lsh")[0],
         logits=m.decision_function(X[:10]))
"""


def test_fresh_process_predicts_exactly_like_the_training_process(model, files, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    res = subprocess.run([sys.executable, "-c", PREDICTOR, path, files / "test.txt", tmp_path / "p.npz"],
                         capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert res.returncode == 0, res.stderr
    Xt, _ = slide.load_xmc(files / "test.txt")
    labels, scores = model.predict_topk(Xt, k=5)
    with np.load(tmp_path / "p.npz") as got:
        assert np.array_equal(got["labels"], labels)
        assert np.array_equal(got["scores"], scores)
        assert np.array_equal(got["lsh"], model.predict_topk(Xt, k=5, mode="lsh")[0])
        assert np.array_equal(got["logits"], model.decision_function(Xt[:10]))


# ----------------------------------------------------------------------------- numerical guard
def small(**kw):
    base = dict(hidden_layer_sizes=(16,), lsh_layers="output", epochs=2, batch_size=16, n_jobs=1, random_state=0,
                learning_rate=0.01)
    base.update(kw)
    return SlideClassifier(**base)


def test_divergence_names_the_batch_and_keeps_the_last_good_checkpoint(files, tmp_path):
    """Real divergence, nothing patched: huge unnormalised inputs and the largest step size."""
    X, Y = slide.load_xmc(files / "train.txt")
    X.data[:] = 1e30
    ckpt = tmp_path / "c.npz"
    clf = small(normalize="none", learning_rate=10, init_scale=1000, optimizer="sgd")
    seen = {}

    def record(rec):  # runs after any checkpoint of the batch: note what the file holds
        seen[rec["step"]] = sha(ckpt) if ckpt.exists() else None

    with pytest.raises(TrainingError) as e:
        clf.fit(X, Y, checkpoint_path=ckpt, checkpoint_every=1, batch_callback=record, batch_callback_every=1)
    msg = str(e.value)
    m = re.search(r"non-finite in epoch 1, batch (\d+) \(step (\d+)\); the last good checkpoint is (.+) "
                  r"\(step (\d+)\), left untouched", msg)
    assert m, msg
    batch, step, path, good = int(m[1]), int(m[2]), m[3], int(m[4])
    assert path == str(ckpt) and good == step - 1 == batch - 1 >= 1
    assert sha(ckpt) == seen[good]  # the file written after the last good step, byte for byte
    last = slide.load(ckpt)  # and it is a loadable, finite checkpoint
    assert last.state_.step == good and all(np.isfinite(w).all() for w in last.coefs_)

    # without a checkpoint the message says so
    with pytest.raises(TrainingError, match=r"batch \d+ \(step \d+\); no checkpoint was written"):
        small(normalize="none", learning_rate=10, init_scale=1000, optimizer="sgd").fit(X, Y)


def test_non_finite_weight_stops_before_overwriting_the_checkpoint_and_resume_recovers(files, tmp_path):
    """A weight row no sample uses turns NaN (the loss stays finite): the next checkpoint write
    refuses, naming the batch; the previous checkpoint resumes into the uninterrupted run."""
    X, Y = slide.load_xmc(files / "train.txt")
    X = sp.hstack([X, sp.csr_matrix((X.shape[0], 1), dtype=np.float32)], format="csr")  # unused feature
    Xt, _ = slide.load_xmc(files / "test.txt", n_features=X.shape[1])
    ckpt = tmp_path / "c.npz"
    state = {}

    def poison(rec):
        if rec["step"] == 14:
            state["sha"] = sha(ckpt)  # written at step 10
            clf.state_.net.W[0][-1, :] = np.nan

    clf = small()
    with pytest.raises(TrainingError) as e:
        clf.fit(X, Y, checkpoint_path=ckpt, checkpoint_every=10, batch_callback=poison, batch_callback_every=1)
    msg = str(e.value)
    assert "A weight became non-finite by epoch 1, batch 20 (step 20)" in msg, msg
    assert f"the last good checkpoint is {ckpt} (step 10), left untouched" in msg
    assert sha(ckpt) == state["sha"]

    resumed = slide.load(ckpt).resume(X, Y)
    assert_same_model(resumed, small().fit(X, Y), Xt)


def test_checkpoint_problems_surface_before_training(files, tmp_path):
    X, Y = slide.load_xmc(files / "train.txt")
    X = sp.hstack([X, sp.csr_matrix((X.shape[0], 1), dtype=np.float32)], format="csr")  # unused feature
    calls = []
    for path, fragment in ((tmp_path / "no" / "c.npz", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(ParameterError, match=fragment):
            small().fit(X, Y, checkpoint_path=path, checkpoint_every=5, batch_callback=calls.append,
                        batch_callback_every=1)
    assert calls == []  # refused before the first batch

    # a weight turns non-finite before the first checkpoint: no checkpoint is named
    clf = small()
    ckpt = tmp_path / "c.npz"

    def poison(rec):
        if rec["step"] == 3:
            clf.state_.net.W[0][-1, :] = np.nan

    with pytest.raises(TrainingError, match=r"batch 10 \(step 10\); no checkpoint was written\.") as e:
        clf.fit(X, Y, checkpoint_path=ckpt, checkpoint_every=10, batch_callback=poison, batch_callback_every=1)
    assert str(ckpt) not in str(e.value) and not ckpt.exists()


# ----------------------------------------------------------------------------- memory guard
def test_too_big_configuration_is_refused_before_allocating(files):
    X, Y = slide.load_xmc(files / "train.txt")
    clf = small(hidden_layer_sizes=(1 << 20, 1 << 20))  # ~4 TiB of weights
    tracemalloc.start()
    try:
        with pytest.raises(ResourceError) as e:
            clf.fit(X, Y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak:,} bytes allocated before refusing"
    assert isinstance(e.value, SlideError) and isinstance(e.value, MemoryError)
    need = fmt(sum(clf.estimate_memory(X.shape[1], Y.shape[1], max_labels=int(np.diff(Y.indptr).max()),
                                       max_nnz=int(np.diff(X.indptr).max())).values()))
    assert re.search(rf"needs about {re.escape(need)} \(weights .*TiB.*\) but only .* of memory is available",
                     str(e.value)), str(e.value)
    with pytest.raises(NotFittedError):
        clf.predict_topk(X[:1])[0]


def test_memory_guard_uses_the_available_memory(files, monkeypatch):
    X, Y = slide.load_xmc(files / "train.txt")
    monkeypatch.setattr("slide.memory.available_bytes", lambda: 1 << 20)
    with pytest.raises(ResourceError, match=r"but only 1\.0 MiB of memory is available"):
        small().fit(X, Y)


def test_dry_run_prints_the_estimate_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "run"
    huge = ["--hidden_layer_sizes", "1048576,1048576"]
    assert main(["train", str(files / "train.txt"), "--out", str(out), "--dry_run", *huge, *RUN_ARGS[2:]]) == 0
    text = capsys.readouterr().out
    assert "memory estimate for training on 400 x 2,000 -> 500 labels" in text
    for key in ("weights", "optimizer_state", "total", "available"):
        assert re.search(rf"^  {key} +\S", text, re.MULTILINE), (key, text)
    assert "TiB" in text
    assert not out.exists()
    # the same configuration without --dry_run: refused, one line, nothing written
    assert main(["train", str(files / "train.txt"), "--out", str(out), *huge, *RUN_ARGS[2:]]) == 2
    err = capsys.readouterr().err
    assert "\nslide: error: This configuration needs about" in err and "available" in err
    assert not (out / "model.npz").exists()


# ----------------------------------------------------------------------------- resume errors
def test_resume_errors(files, killed_copy, reference, tmp_path, capsys):
    def fails(args, *fragments):
        assert main(["train", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert "slide: error:" in err and "Traceback" not in err
        for f in fragments:
            assert f in err, (f, err)

    fails(["--resume", tmp_path / "nowhere"], "no run.json")
    fails(["--resume", reference], "no checkpoint.npz", "the run finished: see model.npz")
    fails([files / "other.txt", "--resume", killed_copy], "the checkpoint was made on other training data",
          "crc32")
    ckpt = killed_copy / "checkpoint.npz"
    raw = ckpt.read_bytes()
    ckpt.write_bytes(raw[: len(raw) // 2])
    fails(["--resume", killed_copy], str(ckpt), "corrupted")
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    ckpt.write_bytes(bytes(flipped))
    fails(["--resume", killed_copy], str(ckpt), "corrupted")
    ckpt.write_bytes(raw)  # intact again
    run_json = killed_copy / "run.json"
    record = run_json.read_text()
    run_json.write_text(record[: len(record) // 2])
    fails(["--resume", killed_copy], "run.json is not valid JSON")
    run_json.write_text("[]")
    fails(["--resume", killed_copy], "run.json is not the record of a run")
    run_json.write_text(record)  # intact again: the same folder resumes
    assert main(["train", "--resume", str(killed_copy)]) == 0
    capsys.readouterr()
    # a finished model is not a checkpoint
    with pytest.raises(ParameterError, match="holds no training progress"):
        X, Y = slide.load_xmc(files / "train.txt")
        slide.load(reference / "model.npz").resume(X, Y)
