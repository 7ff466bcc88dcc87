"""Train or apply PECOS XR-Linear with its defaults; run by :mod:`slide.baselines.pecos` in an
interpreter where ``libpecos`` is installed (it pins NumPy and SciPy versions that slide's own
environment may not have, so it usually lives in a virtual environment of its own).

    python _pecos_worker.py train DIR N_THREADS          # DIR/X.npz, DIR/Y.npz -> DIR/model/
    python _pecos_worker.py predict DIR N_THREADS K BEAM  # DIR/model/, DIR/Xq.npz -> DIR/top.npz

Each writes DIR/result.json (seconds spent, versions). Imports only NumPy, SciPy and PECOS.
"""

import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp


def _csr(path):
    return sp.load_npz(path).tocsr().astype(np.float32)


def train(folder, threads):
    import pecos
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    X, Y = _csr(os.path.join(folder, "X.npz")), _csr(os.path.join(folder, "Y.npz"))
    t0 = time.perf_counter()
    # PECOS' documented default pipeline: PIFA label embeddings, hierarchical k-means label tree,
    # XR-Linear rankers
    emb = LabelEmbeddingFactory.create(Y, X, method="pifa")
    tree = Indexer.gen(emb, threads=threads)
    model = XLinearModel.train(X, Y, C=tree, threads=threads)
    seconds = time.perf_counter() - t0
    model.save(os.path.join(folder, "model"))
    return {"train_seconds": seconds, "pecos_version": getattr(pecos, "__version__", "?"), "numpy": np.__version__}


def predict(folder, threads, k, beam):
    from pecos.xmc.xlinear.model import XLinearModel

    model = XLinearModel.load(os.path.join(folder, "model"))
    Xq = _csr(os.path.join(folder, "Xq.npz"))
    t0 = time.perf_counter()
    P = model.predict(Xq, only_topk=k, beam_size=beam, threads=threads).tocsr()
    seconds = time.perf_counter() - t0
    labels = np.full((Xq.shape[0], k), -1, np.int64)
    scores = np.full((Xq.shape[0], k), -np.inf, np.float32)
    for i in range(Xq.shape[0]):
        s, e = P.indptr[i], P.indptr[i + 1]
        order = np.argsort(-P.data[s:e], kind="stable")[:k]
        labels[i, :order.size] = P.indices[s:e][order]
        scores[i, :order.size] = P.data[s:e][order]
    np.savez(os.path.join(folder, "top.npz"), labels=labels, scores=scores)
    return {"predict_seconds": seconds}


def main(argv) -> int:
    cmd, folder, threads = argv[0], argv[1], int(argv[2])
    out = train(folder, threads) if cmd == "train" else predict(folder, threads, int(argv[3]), int(argv[4]))
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
