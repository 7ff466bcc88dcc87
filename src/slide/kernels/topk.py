"""Top-k by insertion: the ``k`` best (id, value) pairs of a stream, kept best first.

Every top-k in the package (exact prediction over all labels, LSH prediction over an active
set, DOPH's largest coordinates) offers its candidates to :func:`push`, so they share one
order: larger value first, ties to the smaller id. A NaN is never preferred to a number.
"""

from numba import njit


@njit(cache=True, fastmath=False, inline="always")
def push(ids, vals, cnt, k, j, v):
    """Offer (j, v) to the best-first lists ``ids[:cnt]``, ``vals[:cnt]`` that keep at most
    ``k`` pairs; returns the new count."""
    if cnt < k:
        p = cnt
        cnt += 1
    elif cnt > 0 and (v > vals[k - 1] or (v == vals[k - 1] and j < ids[k - 1])):
        p = k - 1
    else:
        return cnt
    while p > 0 and (vals[p - 1] < v or (vals[p - 1] == v and ids[p - 1] > j)):
        vals[p] = vals[p - 1]
        ids[p] = ids[p - 1]
        p -= 1
    vals[p] = v
    ids[p] = j
    return cnt
