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



def test_an_out_folder_that_cannot_be_made_fails_before_the_data_is_read(files, tmp_path, capsys, monkeypatch):
    from slide import cli

    def no_reading(*a, **k):
        raise AssertionError("the data was read before --out was checked")

    monkeypatch.setattr(cli, "_load_data", no_reading)
    (tmp_path / "f").write_text("a file")
    assert main(["train", str(files / "train.txt.gz"), "--out", str(tmp_path / "f" / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"slide: error: --out {tmp_path / 'f' / 'run'}: the folder cannot be made (")
    assert "Not a directory" in err or "not a directory" in err

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
    expect = clf.predict_topk(Xt, k=2)[0]
    assert main(["predict", str(out / "model.npz"), str(files / "test.txt"), "--k", "2"]) == 0
    got = np.array([[int(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()])
    np.testing.assert_array_equal(got, expect)


# ----------------------------------------------------------------------------- command-line contract
def _run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "slide.cli", *args], input=stdin, capture_output=True)


@pytest.fixture(scope="module")
def model_file(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    assert main(["train", str(files / "train.txt.gz"), "--out", str(out), *FAST]) == 0
    return out / "model.npz"


def test_version_flag():
    r = _run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"slide {slide.__version__}"


def test_abbreviated_flags_are_refused(files, model_file, capsys):
    # argparse's default took --n_job for --n_jobs and --lea for --learning_rate
    with pytest.raises(SystemExit) as e:
        main(["predict", str(model_file), str(files / "test.txt"), "--sco"])
    assert e.value.code == 2 and "unrecognized arguments: --sco" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(files / "train.txt.gz"), "--learning_rat", "0.1"])


def test_help_covers_every_argument_with_its_range():
    import argparse

    from slide.cli import build_parser

    ap = build_parser()
    (sub,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    for command, parser in sub.choices.items():
        missing = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not missing, (command, missing)  # positionals (model, test, input) had none
    out = _run_cli("train", "--help").stdout.decode()
    assert "an int in [1, 1048576]" in out  # batch_size, as config.PARAMS and the README promise
    assert "a float in (0, 10]" in out  # learning_rate


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_standard_input_keeps_every_row(files, model_file, name):
    # reading /dev/stdin twice (format sniff, then parse) lost the sniff's buffered rows: 40 in, 28 out
    text = (files / "test.txt").read_bytes()
    r = _run_cli("predict", str(model_file), name, "--k", "2", stdin=text)
    assert r.returncode == 0, r.stderr
    from_file = _run_cli("predict", str(model_file), str(files / "test.txt"), "--k", "2")
    assert r.stdout.decode().count("\n") == 200 and r.stdout == from_file.stdout


def test_standard_input_errors_name_stdin(model_file):
    r = _run_cli("evaluate", str(model_file), "-", stdin=b"2 800 300\n0 1:1\nx 2:1\n")
    err = r.stderr.decode()
    assert r.returncode == 2 and err.startswith("slide: error: <stdin>, line 3:"), err


def test_train_with_fewer_than_five_labels_saves_and_evaluates(tmp_path, capsys):
    # once: a full training run, then predict(k=5) failed on 3 labels and nothing was saved
    X, Y, Xt, Yt = make_extreme(300, 50, 3, n_test=50, random_state=0)
    slide.save_xmc(tmp_path / "tr.txt", X, Y)
    slide.save_xmc(tmp_path / "te.txt", Xt, Yt)
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "tr.txt"), "--test", str(tmp_path / "te.txt"), "--out", str(out),
                 *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "P@1" in m and "P@3" in m and "P@5" not in m
    assert slide.load(out / "model.npz").n_labels_ == 3
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.npz"), str(tmp_path / "te.txt")]) == 0
    assert "P@3" in capsys.readouterr().out


def test_train_saves_the_model_before_its_final_evaluation(files, tmp_path, monkeypatch, capsys):
    def broken(self, *a, **k):  # the final evaluation (the per-epoch one calls slide.predict directly)
        raise slide.errors.DataFormatError("the final evaluation failed")

    monkeypatch.setattr(slide.SlideClassifier, "_topk_ids", broken)
    out = tmp_path / "run"
    assert main(["train", str(files / "train.txt.gz"), "--test", str(files / "test.txt"), "--out", str(out),
                 *FAST]) == 2
    assert "the final evaluation failed" in capsys.readouterr().err
    monkeypatch.undo()
    assert slide.load(out / "model.npz").n_iter_ == 3  # the trained model was kept


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_take_n_jobs(files, model_file, capsys, command):
    assert main([command, str(model_file), str(files / "test.txt"), "--n_jobs", "1"]) == 0
    capsys.readouterr()
    assert main([command, str(model_file), str(files / "test.txt"), "--n_jobs", "0"]) == 2
    assert "flag --n_jobs" in capsys.readouterr().err


# ----------------------------------------------------------------------------- hardening
def test_out_through_a_symlink_keeps_the_link(files, model_file, tmp_path):
    # the atomic replace turned the link into a regular file
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert main(["predict", str(model_file), str(files / "test.txt"), "--k", "2", "--out", str(link)]) == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 200


def test_out_to_a_fifo_or_device_writes_through(files, model_file, tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    assert main(["predict", str(model_file), str(files / "test.txt"), "--k", "2", "--out", str(fifo)]) == 0
    reader.join(30)
    assert fifo.is_fifo() and got[0].count(b"\n") == 200  # was replaced by a regular file
    assert main(["predict", str(model_file), str(files / "test.txt"), "--out", "/dev/null"]) == 0
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_temporaries_of_killed_writes_are_cleaned_up(files, model_file, tmp_path):
    dead = tmp_path / ".pred.txt.999999999.abcd.tmp"  # no such pid: a SIGKILLed writer's leftover
    dead.write_text("partial")
    mine = tmp_path / f".pred.txt.{__import__('os').getpid()}.efgh.tmp"  # a live writer's: kept
    mine.write_text("in progress")
    assert main(["predict", str(model_file), str(files / "test.txt"), "--out", str(tmp_path / "pred.txt")]) == 0
    assert not dead.exists() and mine.exists()


def _one_line_error(capsys, fragment):
    """The command's stderr ends in one 'slide: error:' line holding ``fragment``; no traceback."""
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("slide: error:") and fragment in last and "Traceback" not in err, err


def test_out_folder_that_cannot_be_made(files, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", str(files / "train.txt.gz"), "--out", str(blocker / "sub"), *FAST]) == 2
    _one_line_error(capsys, str(blocker / "sub"))


def test_full_disk_is_one_line(files, model_file, tmp_path, monkeypatch, capsys):
    import errno

    from slide import io

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "atomic_write", full)
    assert main(["predict", str(model_file), str(files / "test.txt"), "--out", str(tmp_path / "p.txt")]) == 2
    _one_line_error(capsys, "No space left on device")


def test_config_paths_must_be_strings(files, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("out = 5\n")  # was a TypeError traceback from Path(5)
    assert main(["train", str(files / "train.txt.gz"), "--config", str(cfg), *FAST]) == 2
    _one_line_error(capsys, "'out' must be a path")


@pytest.mark.parametrize("key,value", [("max_eval", "ten"), ("skip_bad_lines", 1), ("train", 5),
                                       ("format", "parquet"), ("label_sep", 3)])
def test_resume_checks_the_types_of_run_json(files, tmp_path, capsys, key, value):
    out = tmp_path / "run"
    assert main(["train", str(files / "train.txt.gz"), "--out", str(out), "--checkpoint_every", "5",
                 *FAST, "--epochs", "1"]) == 0
    # a finished run keeps no checkpoint; give it one back (a finished model) to reach run.json
    run = json.loads((out / "run.json").read_text())
    run[key] = value
    (out / "run.json").write_text(json.dumps(run))
    (out / "checkpoint.npz").write_bytes((out / "model.npz").read_bytes())
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    _one_line_error(capsys, f"'{key}'")


def test_resume_from_a_finished_model_says_so(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(files / "train.txt.gz"), "--out", str(out), "--checkpoint_every", "5",
                 "--epochs", "1", "--n_jobs", "1", "--verbose", "0", "--hidden_layer_sizes", "16"]) == 0
    (out / "checkpoint.npz").write_bytes((out / "model.npz").read_bytes())  # was an AttributeError
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    _one_line_error(capsys, "holds a finished model")
