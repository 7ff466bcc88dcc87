"""`slide bench`: every method on the same data, bench.json fields, the plot, the summary and the
errors of the command line."""

import json

import numpy as np
import pytest

from slide import bench
from slide.cli import main
from slide.data import save_xmc
from slide.datasets import make_extreme

torch = pytest.importorskip("torch")

PARAMS = {"hidden_layer_sizes": (16,), "epochs": 2, "batch_size": 64, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    X, Y, Xt, Yt = make_extreme(600, 800, 5000, n_test=200, label_power=0.6, random_state=2)
    save_xmc(d / "train.txt", X, Y)
    save_xmc(d / "test.txt", Xt, Yt)
    return d


def test_curve_mode_writes_points_summary_and_plot(files, tmp_path):
    data = {"train": str(files / "train.txt"), "test": str(files / "test.txt"), "eval_size": 150,
            "max_train": 500}
    res = bench.run_bench(data, ["slide", "dense", "sampled"], params=PARAMS, n_jobs=1, eval_every=0.2,
                          method_params={"sampled": {"n_negatives": 64}}, out_dir=str(tmp_path), verbose=False)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["points"] == json.loads(json.dumps(res["points"]))
    methods = {p["method"] for p in saved["points"]}
    assert methods == {"slide", "dense", "sampled"}
    for m in methods:
        pts = [p for p in saved["points"] if p["method"] == m]
        fin = [p for p in pts if p["final"]]
        assert len(fin) == 1 and fin[0] is pts[-1]
        # two epochs of 500 points, the same for every method
        assert fin[0]["samples_seen"] == 1000 and fin[0]["n_train"] == 500 and fin[0]["n_eval"] == 150
        for p in pts:
            assert set(p) >= {"method", "train_seconds", "samples_seen", "P@1", "P@5", "samples_per_second",
                              "peak_rss_bytes", "n_jobs"}
            assert 0 <= p["P@1"] <= 1 and 0 <= p["P@5"] <= 1
        times = [p["train_seconds"] for p in pts]
        assert times == sorted(times)
        assert fin[0]["theoretical_bytes"]["weights"] == (800 * 16 + 16 + 16 * 5000 + 5000) * 4
        assert fin[0]["P@1"] > 0.01  # learnt something (chance ~ 1/5000)
    s = saved["summary"]
    assert s["slide_vs_dense"]["throughput_ratio"] == pytest.approx(
        s["slide"]["samples_per_second"] / s["dense"]["samples_per_second"])
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_threads_mode(tmp_path):
    data = {"preset": "slide-reference", "scale": 0.01, "eval_size": 50}
    res = bench.run_bench(data, ["slide"], params={**PARAMS, "epochs": 1}, mode="threads", threads=(1, 2),
                          out_dir=str(tmp_path), verbose=False)
    assert [p["n_jobs"] for p in res["points"]] == [1, 2]
    assert all("P@1" not in p and p["samples_per_second"] > 0 for p in res["points"])
    assert (tmp_path / "bench.png").exists()


def test_summary_finds_when_slide_reaches_the_baseline_best():
    pts = [{"method": "dense", "train_seconds": t, "samples_seen": 10 * t, "samples_per_second": 10.0,
            "P@1": p, "P@5": p / 2, "peak_rss_bytes": 1, "final": t == 100} for t, p in ((50, 0.2), (100, 0.3))]
    pts += [{"method": "slide", "train_seconds": t, "samples_seen": 200 * t, "samples_per_second": 200.0,
             "P@1": p, "P@5": p / 2, "peak_rss_bytes": 1, "final": t == 20} for t, p in ((2, 0.1), (5, 0.31), (20, 0.5))]
    s = bench.summarize(pts)["slide_vs_dense"]
    assert s["throughput_ratio"] == 20.0
    assert s["baseline_best_P@1"] == 0.3 and s["slide_seconds_to_reach"] == 5 and s["sooner"] == 20.0
    # a label tree trains in one pass: its samples/s is no yardstick, its best P@1 and time are
    trees = [dict(p, method="omikuji") for p in pts if p["method"] == "dense"]
    s = bench.summarize(trees + [p for p in pts if p["method"] == "slide"])["slide_vs_omikuji"]
    assert s["throughput_ratio"] is None and s["sooner"] == 20.0


@pytest.mark.parametrize("argv, fragment", [
    (["bench"], "--preset NAME, or a TRAIN file"),
    (["bench", "--preset", "amazon-670k", "x.txt"], "not both"),
    (["bench", "--preset", "amazon-670k", "--methods", "slide,gpu"], "--methods"),
    (["bench", "missing.txt", "--test", "missing2.txt"], "does not exist"),
    (["bench", "--preset", "amazon-670k", "--threads", "1,two"], "--threads"),
    (["bench", "--preset", "amazon-670k", "--max_seconds", "-3"], "--max_seconds"),
    (["bench", "--preset", "amazon-670k", "--learning_rate", "-1"], "learning_rate"),
])
def test_cli_errors_are_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_cli_bench_runs(files, tmp_path, capsys):
    rc = main(["bench", str(files / "train.txt"), "--test", str(files / "test.txt"), "--methods", "slide,dense",
               "--epochs", "1", "--hidden_layer_sizes", "8", "--n_jobs", "1", "--eval_size", "100",
               "--eval_first", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["data"]["eval_first"] is True and res["n_jobs"] == 1
    assert {p["method"] for p in res["points"]} == {"slide", "dense"}
    assert np.isfinite([p["P@1"] for p in res["points"]]).all()
