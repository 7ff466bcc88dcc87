"""The `slide` command on small generated files: train, evaluate, predict, configs and errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

import slide
from slide.cli import main
from slide.datasets import make_extreme

FAST = ["--hidden_layer_sizes", "32", "--epochs", "3", "--batch_size", "64", "--learning_rate", "0.01",
        "--dropout", "0", "--input-dropout", "0",
        "--n_jobs", "1", "--random_state", "0", "--verbose", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    X, Y, Xt, Yt = make_extreme(1500, 800, 300, n_test=200, label_power=0.6, random_state=3)
    slide.save_xmc(d / "train.txt.gz", X, Y)
    slide.save_xmc(d / "test.txt", Xt, Yt)
    return d


def test_train_writes_metrics_log_and_model(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(files / "train.txt.gz"), "--test", str(files / "test.txt"), "--out", str(out),
                 "--lsh_layers", "output", *FAST])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("P@1", "P@3", "P@5", "nDCG@5", "train_seconds", "samples_per_second"):
        assert isinstance(m[key], float), key
    assert m["P@1"] > 0.3
    assert m["params"]["hidden_layer_sizes"] == [32] and m["params"]["lsh_layers"] == "output"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert all("train_seconds" in r and "P@1" in r for r in log)
    assert "P@1" in capsys.readouterr().out
    clf = slide.load(out / "model.npz")
    assert clf.n_labels_ == 300

    # evaluate and predict on the saved model
    assert main(["evaluate", str(out / "model.npz"), str(files / "test.txt"), "--k", "5"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["P@1"] == pytest.approx(m["P@1"])
    pred = tmp_path / "pred.txt"
    assert main(["predict", str(out / "model.npz"), str(files / "test.txt"), "--k", "3", "--scores",
                 "--out", str(pred)]) == 0
    lines = pred.read_text().splitlines()
    assert len(lines) == 200 and all(len(line.split()) == 3 and ":" in line for line in lines)


def test_config_file_and_flag_precedence(files, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('epochs = 1\nhidden_layer_sizes = [16]\nlearning_rate = 0.02\n')
    out = tmp_path / "run"
    assert main(["train", str(files / "train.txt.gz"), "--config", str(cfg), "--out", str(out), "--epochs", "2",
                 "--n_jobs", "1", "--verbose", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["params"]["epochs"] == 2  # the flag wins over the file
    assert m["params"]["hidden_layer_sizes"] == [16] and m["params"]["learning_rate"] == 0.02
    assert "P@1" not in m  # no test file, no evaluation


@pytest.mark.parametrize("args,fragment", [
    (["--n_tables", "0"], "'n_tables' parameter"),
    (["--learning-rate", "abc"], "'learning_rate' parameter"),
    (["--hash_family", "md5"], "one of 'simhash'"),
])
def test_bad_flags_give_one_line_errors(files, tmp_path, capsys, args, fragment):
    code = main(["train", str(files / "train.txt.gz"), "--out", str(tmp_path / "r"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("slide: error:") and fragment in err


def test_bad_files_give_one_line_errors(files, tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3 2\n0 1:1\n1 7:1\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochz = 3\n")
    assert main(["train", str(files / "train.txt.gz"), "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err


def test_test_file_with_other_dimensions_is_refused(files, tmp_path, capsys):
    X, Y, _, _ = make_extreme(50, 900, 300, n_test=1, random_state=4)
    other = tmp_path / "other.txt"
    slide.save_xmc(other, X, Y)
    code = main(["train", str(files / "train.txt.gz"), "--test", str(other), "--out", str(tmp_path / "r"), *FAST])
    assert code == 2
    assert "900 features" in capsys.readouterr().err


def test_console_script_help_lists_every_parameter():
    out = subprocess.run([sys.executable, "-m", "slide.cli", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in ("--n_tables", "--hashes_per_table", "--active_size", "--learning_rate", "--random_state"):
        assert name in out


def test_predictions_match_the_python_api(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(files / "train.txt.gz"), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    clf = slide.load(out / "model.npz")
    Xt, _ = slide.load_xmc(files / "test.txt")
    expect = clf.predict(Xt, k=2)
    assert main(["predict", str(out / "model.npz"), str(files / "test.txt"), "--k", "2"]) == 0
    got = np.array([[int(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()])
    np.testing.assert_array_equal(got, expect)
