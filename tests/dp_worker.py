"""One data-parallel worker for tests/test_distributed.py, started by torchrun (or by hand with
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT).

    python dp_worker.py OUT_FOLDER DATA PARAMS_JSON

DATA is an XMC training file (its test file beside it as test.txt.gz: rank 0 evaluates) or
'fixed-nnz' (a generated set whose rows all have the same number of non-zeros). Each worker
takes rows rank, rank + N, ... and writes OUT_FOLDER/rank<r>.json with a checksum of its
weights, the data_parallel_ report and, on rank 0, the test precision.
"""

import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import slide
from slide.metrics import evaluate

FIXED_NNZ, FIXED_ROWS, FIXED_FEATURES, FIXED_LABELS = 5, 301, 40, 7


def fixed_nnz_data():
    """Rows of exactly FIXED_NNZ non-zeros, one label each (so every sample's record has one size)."""
    rng = np.random.default_rng(0)
    cols = np.stack([rng.choice(FIXED_FEATURES, FIXED_NNZ, replace=False) for _ in range(FIXED_ROWS)])
    labels = cols[:, 0] % FIXED_LABELS
    X = sp.csr_matrix((rng.uniform(0.5, 1.5, cols.size).astype(np.float32), cols.ravel(),
                       np.arange(0, cols.size + 1, FIXED_NNZ)), shape=(FIXED_ROWS, FIXED_FEATURES))
    Y = sp.csr_matrix((np.ones(FIXED_ROWS, np.float32), labels, np.arange(FIXED_ROWS + 1)),
                      shape=(FIXED_ROWS, FIXED_LABELS))
    return X, Y, None, None


def main():
    out, data, params = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if data == "fixed-nnz":
        X, Y, Xt, Yt = fixed_nnz_data()
    else:
        X, Y = slide.load_xmc(data)
        Xt, Yt = slide.load_xmc(Path(data).with_name("test.txt.gz"))
    clf = slide.SlideClassifier(**params).fit(X[rank::world], Y[rank::world])
    rec = {"rank": rank, "world": world, "report": clf.data_parallel_, "steps": clf.state_.step,
           "weights_crc": zlib.crc32(b"".join(a.tobytes() for a in clf.coefs_ + clf.intercepts_)),
           "history": clf.history_}
    if rank == 0 and Xt is not None:
        rec.update(evaluate(Yt, clf.predict_topk(Xt, k=5)[0]))
    (out / f"rank{rank}.json").write_text(json.dumps(rec))


if __name__ == "__main__":
    main()
