"""Model files as a stranger might hand them over: every crafted or damaged file gets a
DataFormatError naming the problem, never a crash, a foreign exception or a silently different
model. Crafted files recompute their checksums (trivial for anyone), so validation, not the
checksum, must catch them."""

import json
import zipfile

import numpy as np
import pytest

import slide
from slide import DataFormatError, SlideClassifier
from slide.datasets import make_extreme
from slide.io import read_arrays, write_arrays


@pytest.fixture(scope="module")
def data():
    return make_extreme(400, 300, 5000, n_test=60, random_state=3)


@pytest.fixture(scope="module")
def model_path(data, tmp_path_factory):
    X, Y, _, _ = data
    clf = SlideClassifier(hidden_layer_sizes=(16,), lsh_layers="output", epochs=1, batch_size=64,
                          random_state=0, n_jobs=1)
    path = tmp_path_factory.mktemp("m") / "m.npz"
    clf.fit(X, Y, checkpoint_path=path.with_name("ck.npz"), checkpoint_every=1)
    clf.save(path)
    return path


def crafted(model_path, tmp_path, change):
    """A copy of the model with ``change(arrays, meta)`` applied and every checksum recomputed."""
    arrays, meta = read_arrays(model_path)
    change(arrays, meta)
    out = tmp_path / "crafted.npz"
    write_arrays(out, arrays, meta)
    return out


def load_fails(path, match):
    with pytest.raises(DataFormatError, match=match):
        slide.load(path)


def test_an_untouched_file_loads_and_predicts_as_saved(model_path, data, tmp_path):
    _, _, Xt, _ = data
    a = slide.load(model_path)
    b = slide.load(crafted(model_path, tmp_path, lambda arrays, meta: None))
    np.testing.assert_array_equal(a.predict_topk(Xt, mode="lsh")[0], b.predict_topk(Xt, mode="lsh")[0])


def _set_bucket(arrays, meta, value):
    l = len(meta["layer_specs"]) - 1
    fill = arrays[f"fill{l}"]
    t, key = np.argwhere(fill > 0)[0]
    arrays[f"buckets{l}"][t, key, 0] = value


@pytest.mark.parametrize("value", [10**6, -5])
def test_bucket_ids_outside_the_layer_are_refused(model_path, tmp_path, value):
    # once: predict(mode='lsh') segfaulted on such a file
    load_fails(crafted(model_path, tmp_path, lambda a, m: _set_bucket(a, m, value)), "outside")


def test_negative_bucket_counts_are_refused(model_path, tmp_path):
    def change(arrays, meta):
        arrays[f"fill{len(meta['layer_specs']) - 1}"][0, 0] = -3

    load_fails(crafted(model_path, tmp_path, change), "negative bucket counts")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused(model_path, tmp_path, value):
    def change(arrays, meta):
        arrays["W1"][0, 0] = value

    load_fails(crafted(model_path, tmp_path, change), "NaN or infinite")


@pytest.mark.parametrize("dtype", [np.float64, ">f4", np.int32])
def test_weights_of_another_dtype_are_refused(model_path, tmp_path, dtype):
    def change(arrays, meta):
        arrays["W0"] = arrays["W0"].astype(dtype)

    load_fails(crafted(model_path, tmp_path, change), "array W0 is")


@pytest.mark.parametrize("field,value", [("hashes_per_table", 64), ("active_size", 10**6), ("n_tables", 3)])
def test_layer_settings_that_disagree_with_the_parameters_are_refused(model_path, tmp_path, field, value):
    # once: these loaded and silently changed LSH predictions
    def change(arrays, meta):
        meta["layer_specs"][-1][field] = value

    load_fails(crafted(model_path, tmp_path, change), f"{field}={value}")


@pytest.mark.parametrize("change,match", [
    (lambda m: m.update(seed=2**70), "'seed'"),
    (lambda m: m.update(seed="0"), "'seed'"),
    (lambda m: m.update(step=-100), "'step'"),
    (lambda m: m.update(total_steps=0), "'total_steps'"),
    (lambda m: m.update(max_nnz=0), "'max_nnz'"),
    (lambda m: m.update(max_labels=10**9), "'max_labels'"),
    (lambda m: m.update(layer_specs=[]), "layer_specs"),
    (lambda m: m.update(layer_specs="x"), "layer_specs"),
    (lambda m: m["layer_specs"][0].update(colour=1), "unknown layer setting"),
    (lambda m: m.update(n_labels=True), "'n_labels'"),
    (lambda m: m.update(lsh_check={"rows": 10, "top1_agreement": 1.5}), "'lsh_check'"),
    (lambda m: m.update(lsh_check={"rows": 0, "top1_agreement": 0.5}), "'lsh_check'"),
    (lambda m: m.update(lsh_check=[0.5]), "'lsh_check'"),
])
def test_metadata_out_of_range_is_refused(model_path, tmp_path, change, match):
    load_fails(crafted(model_path, tmp_path, lambda arrays, meta: change(meta)), match)


@pytest.mark.parametrize("change,match", [
    (lambda p: p.update(epoch="a"), "'epoch'"),
    (lambda p: p.update(epoch=99), "exceeds"),
    (lambda p: p.update(batch=-1), "'batch'"),
    (lambda p: p.update(rng_state={"bit_generator": "PCG64", "state": 5}), "rng_state"),
    (lambda p: p.update(loss_sum=float("nan")), "loss_sum"),
    (lambda p: p.update(extra=1), "record of the fields"),
])
def test_checkpoint_progress_is_checked(model_path, tmp_path, change, match):
    ck = model_path.with_name("ck.npz")
    load_fails(crafted(ck, tmp_path, lambda arrays, meta: change(meta["progress"])), match)


def test_resume_refuses_buffers_smaller_than_the_data(model_path, data, tmp_path):
    # once: max_nnz=1 made the resumed run write out of bounds
    X, Y, _, _ = data
    ck = model_path.with_name("ck.npz")
    clf = slide.load(crafted(ck, tmp_path, lambda arrays, meta: meta.update(max_nnz=1)))
    with pytest.raises(DataFormatError, match="buffers hold 1 non-zeros"):
        clf.resume(X, Y)


def test_the_metadata_has_a_checksum(model_path, tmp_path):
    with zipfile.ZipFile(model_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    blob = members["__meta__.npy"]
    assert b'"seed": 0' in blob
    members["__meta__.npy"] = blob.replace(b'"seed": 0', b'"seed": 1')
    out = tmp_path / "edited.npz"
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    load_fails(out, "checksum mismatch for the metadata")


def _write_meta(tmp_path, meta_bytes, extra=None):
    out = tmp_path / "meta.npz"
    payload = {"__meta__": np.frombuffer(meta_bytes, np.uint8), **(extra or {})}
    np.savez(out, **payload)
    return out


@pytest.mark.parametrize("meta,match", [
    (b"[1, 2]", "not a slide model file"),
    (b'"text"', "not a slide model file"),
    (b'{"format": "slide-model", "format_version": "1"}', "format_version"),
    (b'{"format": "slide-model", "format_version": null}', "format_version"),
    (b'{"format": "slide-model", "format_version": 1, "sha256": [1]}', "sha256"),
    (b"[" * 100000 + b"]" * 100000, "corrupted"),
    (b"\xff\xfe", "corrupted"),
])
def test_metadata_of_the_wrong_json_type_is_refused(tmp_path, meta, match):
    load_fails(_write_meta(tmp_path, meta), match)


def test_damaged_or_foreign_files_are_refused(model_path, tmp_path):
    npy = tmp_path / "plain.npy"
    np.save(npy, np.zeros(3))
    load_fails(npy, "not a readable slide model file")

    with zipfile.ZipFile(model_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    raw = tmp_path / "raw.npz"  # __meta__ as a raw member, not an array
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("__meta__", b"{}")
    load_fails(raw, "not an array")

    flipped = tmp_path / "flipped.npz"  # a byte of an array header flipped
    name = "W0.npy"
    b = bytearray(members[name])
    b[20] = ord("(")
    with zipfile.ZipFile(flipped, "w") as zf:
        for n, v in members.items():
            zf.writestr(n, bytes(b) if n == name else v)
    load_fails(flipped, "header of array 'W0' is damaged|declares")

    huge = tmp_path / "huge.npz"  # a header declaring 10^11 elements over a few bytes
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**11,)
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(huge, "w") as zf:
        for n, v in members.items():
            zf.writestr(n, buf.getvalue() + b"\0" * 16 if n == name else v)
    load_fails(huge, "declares 400000000000 bytes")


def test_version_1_files_without_a_metadata_checksum_still_load(model_path, data, tmp_path):
    _, _, Xt, _ = data
    arrays, meta = read_arrays(model_path)
    with zipfile.ZipFile(model_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta.pop("meta_sha256")
    meta["format_version"] = 1
    old = tmp_path / "v1.npz"
    with zipfile.ZipFile(old, "w") as zf:
        for n, v in members.items():
            if n != "__meta__.npy":
                zf.writestr(n, v)
        buf = __import__("io").BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8))
        zf.writestr("__meta__.npy", buf.getvalue())
    a, b = slide.load(model_path), slide.load(old)
    np.testing.assert_array_equal(a.predict_topk(Xt)[0], b.predict_topk(Xt)[0])


def test_a_model_loaded_for_prediction_only(model_path, data, tmp_path):
    X, Y, Xt, Yt = data
    whole = slide.load(model_path)
    light = slide.load(model_path, optimizer_state=False)
    assert not light.state_.optimizer_state and whole.state_.optimizer_state
    assert (light.predict_topk(Xt, k=3)[0] == whole.predict_topk(Xt, k=3)[0]).all()
    assert all(not a.any() for a in light.state_.net.vW.arrays)  # never read: zeros, no memory touched
    light.save(tmp_path / "light.npz")  # a prediction-only file: no moments in it
    moments = sum(2 * (W.nbytes + b.nbytes) for W, b in zip(whole.coefs_, whole.intercepts_))
    assert model_path.stat().st_size - (tmp_path / "light.npz").stat().st_size >= 0.99 * moments
    again = slide.load(tmp_path / "light.npz")
    assert not again.state_.optimizer_state
    assert (again.predict_topk(Xt, k=3)[0] == whole.predict_topk(Xt, k=3)[0]).all()
    with pytest.raises(slide.errors.ParameterError, match="optimizer_state"):
        slide.load(model_path, optimizer_state="no")
    load_fails(crafted(model_path, tmp_path, lambda arrays, meta: meta.update(optimizer_state=1)), "'optimizer_state'")


def test_a_first_layer_trained_by_sgd_has_no_moments_and_resumes_as_one_run(data, tmp_path):
    """input_optimizer='sgd': the file holds no moments for the first layer's weights (its
    biases and the other layers keep theirs), and a run that crashed after a checkpoint resumes
    to the weights of the run that did not."""
    X, Y, Xt, _ = data
    kw = dict(hidden_layer_sizes=(16,), lsh_layers="output", epochs=2, batch_size=64, random_state=0, n_jobs=1,
              input_optimizer="sgd", input_learning_rate=0.5)
    whole = SlideClassifier(**kw).fit(X, Y)
    whole.save(tmp_path / "whole.npz")
    arrays, meta = read_arrays(tmp_path / "whole.npz")
    assert not {"mW0", "vW0"} & set(arrays) and {"mb0", "vb0", "mW1", "vW1"} <= set(arrays)
    assert (meta["resolved_params"]["input_optimizer"], meta["resolved_params"]["input_learning_rate"]) == ("sgd", 0.5)

    def crash(record):
        if record["step"] == 5:
            raise KeyboardInterrupt

    ck = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        SlideClassifier(**kw).fit(X, Y, checkpoint_path=ck, checkpoint_every=4, batch_callback=crash,
                                  batch_callback_every=1)
    resumed = slide.load(ck).resume(X, Y)
    for a, b in zip(resumed.coefs_ + resumed.intercepts_, whole.coefs_ + whole.intercepts_):
        np.testing.assert_array_equal(a, b)
    light = slide.load(tmp_path / "whole.npz", optimizer_state=False)
    np.testing.assert_array_equal(light.predict_topk(Xt, k=3)[0], whole.predict_topk(Xt, k=3)[0])


def test_files_from_before_the_first_layer_had_its_own_optimiser_train_it_as_the_others(model_path, tmp_path):
    def strip(arrays, meta):
        for record in (meta["params"], meta["resolved_params"]):
            record.pop("input_optimizer")
            record.pop("input_learning_rate")

    old = slide.load(crafted(model_path, tmp_path, strip))
    assert (old.state_.config["input_optimizer"], old.state_.config["input_learning_rate"]) == ("adam", 0.003)
    assert old.get_params()["input_optimizer"] == "auto"
