"""Data-parallel training (slide.distributed) with torchrun on loopback.

Each test starts real worker processes with PyTorch's own launcher (``python -m
torch.distributed.run``, i.e. torchrun) and gloo; workers are tests/dp_worker.py (the Python API)
or ``-m slide train`` (the command line). Where PyTorch is not installed they skip.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import slide
from slide.metrics import evaluate

pytest.importorskip("torch.distributed")

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "datasets"
WORKER = HERE / "dp_worker.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _torchrun_cmd(n: int, *, max_restarts: int = 0):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr",
            "127.0.0.1", "--master-port", str(_port()), "--max-restarts", str(max_restarts)]


def _run_workers(tmp_path, n, data, params, timeout=900):
    out = tmp_path / f"workers{n}"
    out.mkdir()
    proc = subprocess.run([*_torchrun_cmd(n), str(WORKER), str(out), str(data), json.dumps(params)],
                          env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


def _bibtex():
    train, test = DATA / "bibtex" / "train.txt.gz", DATA / "bibtex" / "test.txt.gz"
    if not (train.exists() and test.exists()):
        pytest.skip(f"{DATA / 'bibtex'} not available (the shared data sets sit beside the repository in CI)")
    return train, test


PARAMS = {"random_state": 0, "n_jobs": 1}


@pytest.fixture(scope="module")
def one_process_p1():
    train, test = _bibtex()
    X, Y = slide.load_xmc(train)
    Xt, Yt = slide.load_xmc(test)
    clf = slide.SlideClassifier(**PARAMS).fit(X, Y)
    return evaluate(Yt, clf.predict_topk(Xt, k=5)[0])["P@1"], clf.state_.step


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4])
def test_workers_reach_the_precision_of_one_process(tmp_path, one_process_p1, n):
    """Synchronous mode on a shared data set: N workers, each with its shard, the same global
    batches and number of samples as one process, reach its P@1 (within 0.01), and every replica
    ends with the very same weights."""
    train, _ = _bibtex()
    p1_single, steps_single = one_process_p1
    ranks = _run_workers(tmp_path, n, train, PARAMS)
    assert len({r["weights_crc"] for r in ranks}) == 1, "the replicas diverged"
    assert all(r["steps"] == steps_single for r in ranks)
    rep = ranks[0]["report"]
    assert rep["world_size"] == n and rep["mode"] == "sync" and rep["exchanges"] == steps_single
    # the factors of a batch's gradient are a fraction of a dense all-reduce of the same model
    assert 0 < rep["bytes_sent_per_batch"] < rep["dense_allreduce_bytes_per_batch"] / 4
    print(f"{n} workers P@1 {ranks[0]['P@1']:.4f}, one process {p1_single:.4f}; "
          f"{rep['bytes_sent_per_batch']:,.0f} B/batch sent against {rep['dense_allreduce_bytes_per_batch']:,} dense")
    assert abs(ranks[0]["P@1"] - p1_single) <= 0.01


@pytest.mark.slow
def test_local_sgd_keeps_the_replicas_equal_after_each_average(tmp_path, one_process_p1):
    train, _ = _bibtex()
    ranks = _run_workers(tmp_path, 2, train, {**PARAMS, "data_parallel": "local_sgd", "sync_every": 4})
    # the last batch of every epoch ends with an average: the replicas agree at the end
    assert len({r["weights_crc"] for r in ranks}) == 1
    steps = ranks[0]["steps"]
    assert ranks[0]["report"]["exchanges"] >= steps // 4
    assert ranks[0]["P@1"] >= one_process_p1[0] - 0.03


@pytest.mark.parametrize("mode", ["sync", "local_sgd"])
def test_a_first_layer_learnt_by_sgd_trains_the_same_on_every_replica(tmp_path, mode):
    """input_optimizer='sgd' (the recipe's choice on wide text input) keeps no Adam moments for the
    first layer: both modes run it, and the replicas end equal."""
    params = {"random_state": 0, "n_jobs": 1, "hidden_layer_sizes": (16,), "lsh_layers": "none",
              "input_optimizer": "sgd", "input_learning_rate": 1.0, "batch_size": 10, "epochs": 2,
              "data_parallel": mode, "sync_every": 3}
    ranks = _run_workers(tmp_path, 2, "fixed-nnz", params)
    assert ranks[0]["weights_crc"] == ranks[1]["weights_crc"]
    assert ranks[0]["report"]["mode"] == mode and ranks[0]["report"]["exchanges"] > 0


def test_bytes_counted_are_the_records_gathered(tmp_path):
    """With rows of a fixed number of non-zeros and dense layers, every sample's record has one
    size, so the bytes an all-gather of each batch moves follow from the batch plan alone."""
    import dp_worker as W  # noqa: E402  (tests/ is on sys.path under pytest)

    params = {"random_state": 0, "n_jobs": 1, "hidden_layer_sizes": (16,), "lsh_layers": "none",
              "input_dropout": 0.0, "dropout": 0.0, "batch_size": 10, "epochs": 2}
    ranks = _run_workers(tmp_path, 2, "fixed-nnz", params)
    assert ranks[0]["weights_crc"] == ranks[1]["weights_crc"]
    record = 1 + 2 + 2 * W.FIXED_NNZ + 2 * 16 + W.FIXED_LABELS  # floats: counts, input, hidden act+delta, output delta
    shard = [len(range(r, W.FIXED_ROWS, 2)) for r in range(2)]  # every row has a label
    local = [5, 5]
    n_batches = max(-(-s // b) for s, b in zip(shard, local))
    expected = 0
    for bi in range(n_batches):
        counts = [min(max(s - bi * b, 0), b) for s, b in zip(shard, local)]
        expected += (2 - 1) * (max(1, max(counts) * record) * 4 + 8)  # the padded share, and its size
    expected *= 2  # epochs
    rep = ranks[0]["report"]
    assert rep["exchanges"] == 2 * n_batches
    assert rep["bytes_sent"] == expected
    model_bytes = 4 * (W.FIXED_FEATURES * 16 + 16 + 16 * W.FIXED_LABELS + W.FIXED_LABELS)
    assert rep["dense_allreduce_bytes_per_batch"] == int(2 * (2 - 1) / 2 * model_bytes)


def test_a_worker_that_never_joins_is_a_clear_error_not_a_hang(tmp_path):
    """Rank 0 of a group of 2 whose rank 1 never starts: the wait ends at SLIDE_DIST_TIMEOUT with
    an error naming the rendezvous."""
    env = _env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_port()),
               SLIDE_DIST_TIMEOUT="4")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "slide", "train", "--out", str(tmp_path / "run"), "--epochs", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "did not form (waited up to 4 s" in proc.stderr and "127.0.0.1" in proc.stderr
    assert time.monotonic() - t0 < 120



def test_joining_waits_minutes_by_default_and_the_setting_bounds_everything(monkeypatch):
    from slide import distributed

    monkeypatch.delenv("SLIDE_DIST_TIMEOUT", raising=False)
    assert distributed._timeouts() == (600.0, 1800.0)  # torchrun's join timeout; PyTorch's collective default
    monkeypatch.setenv("SLIDE_DIST_TIMEOUT", "45")
    assert distributed._timeouts() == (45.0, 45.0)
    for bad in ("0", "-3", "soon", "nan"):
        monkeypatch.setenv("SLIDE_DIST_TIMEOUT", bad)
        with pytest.raises(slide.ParameterError, match="SLIDE_DIST_TIMEOUT must be a positive number"):
            distributed._timeouts()

def test_data_parallel_without_a_group_is_refused():
    X = np.eye(4, dtype=np.float32)
    with pytest.raises(slide.ParameterError, match="torchrun"):
        slide.SlideClassifier(data_parallel="sync").fit(X, [0, 1, 2, 3])


def _workers(pid: int) -> list[int]:
    """The `slide train` processes torchrun (process ``pid``) started."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"slide" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
    return out


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_resumes_from_the_checkpoint(tmp_path):
    """`torchrun --max-restarts 1 -m slide train`: one worker is killed with SIGKILL after the
    first checkpoint; the elastic agent restarts the group, every rank resumes from rank 0's
    checkpoint, and the run ends with the same model as a run that was never interrupted."""
    train, test = _bibtex()
    args = ["-m", "slide", "train", str(train), "--test", str(test), "--n_jobs", "1", "--random_state", "0",
            "--checkpoint_every", "100", "--verbose", "0"]
    whole = subprocess.run([*_torchrun_cmd(2), *args, "--out", str(tmp_path / "whole")], env=_env(),
                           capture_output=True, text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*_torchrun_cmd(2, max_restarts=1), *args, "--out", str(out)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (out / "checkpoint.npz").exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        workers = _workers(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)
        log, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-3000:]
    assert "Restarted by torchrun: resuming from" in log
    resumed_at = [line for line in log.splitlines() if line.startswith("Resuming")]
    assert resumed_at and "(step 0)" not in resumed_at[0], log[-3000:]
    a = slide.load(tmp_path / "whole" / "model.npz")
    b = slide.load(out / "model.npz")
    assert a.state_.step == b.state_.step
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    assert not (out / "checkpoint.npz").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_parallel"]["world_size"] == 2


def _sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair (10.77.<k>.1 and .2): separate "hosts" whose
    only link to each other is that pair. Skips where namespaces cannot be made (not root)."""
    if os.geteuid() != 0 or _sh("ip", "-V").returncode != 0:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"sl{os.getpid() % 100000}"
    hosts = [f"{tag}a", f"{tag}b"]
    k = os.getpid() % 200 + 20
    try:
        for h in hosts:
            if _sh("ip", "netns", "add", h).returncode != 0:
                pytest.skip("cannot create network namespaces here")
        steps = [("ip", "link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb"),
                 ("ip", "link", "set", f"{tag}va", "netns", hosts[0]),
                 ("ip", "link", "set", f"{tag}vb", "netns", hosts[1])]
        for i, h in enumerate(hosts):
            dev = f"{tag}v{'ab'[i]}"
            steps += [("ip", "-n", h, "addr", "add", f"10.77.{k}.{i + 1}/24", "dev", dev),
                      ("ip", "-n", h, "link", "set", dev, "up"), ("ip", "-n", h, "link", "set", "lo", "up")]
        for cmd in steps:
            r = _sh(*cmd)
            if r.returncode != 0:
                pytest.skip(f"cannot join the namespaces ({' '.join(cmd)}: {r.stderr.strip()})")
        yield [(h, f"10.77.{k}.{i + 1}", f"{tag}v{'ab'[i]}") for i, h in enumerate(hosts)]
    finally:
        for h in hosts:
            _sh("ip", "netns", "del", h)


def test_two_hosts_train_over_their_own_link(tmp_path, two_hosts):
    """Two "nodes" in two network namespaces, each with its own torchrun (--nnodes 2), meet at
    node 0's address on the veth link and train one model: identical replicas, every batch
    exchanged over that link."""
    params = {"random_state": 0, "n_jobs": 1, "hidden_layer_sizes": (16,), "epochs": 2, "batch_size": 10}
    master, port = two_hosts[0][1], 29400 + os.getpid() % 500
    procs = []
    for node, (ns, _, dev) in enumerate(two_hosts):
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--node-rank", str(node), "--nproc-per-node", "1", "--master-addr", master, "--master-port",
               str(port), str(WORKER), str(tmp_path), "fixed-nnz", json.dumps(params)]
        env = _env(GLOO_SOCKET_IFNAME=dev, SLIDE_DIST_TIMEOUT="120")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["weights_crc"] == ranks[1]["weights_crc"]
    assert ranks[0]["report"]["world_size"] == 2 and ranks[0]["report"]["exchanges"] == ranks[0]["steps"] > 0
    # what each node put on the link covers the exchanges slide counted (plus TCP/IP framing)
    for node, (ns, _, dev) in enumerate(two_hosts):
        sent = int(_sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/statistics/tx_bytes").stdout)
        assert sent >= ranks[node]["report"]["bytes_sent"] > 0
