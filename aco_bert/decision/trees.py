"""Fast evaluation of the decision layer's XGBoost models: every tree of every booster descended at once in numpy.

Why: a stacked bundle calls one booster per tier per request for the stacker and again for the cost model; through
XGBoost's Python API each call costs ~0.1 ms of overhead even for 30 depth-2 trees, i.e. milliseconds per decision
at 24 tiers. :class:`TreeEnsemble` holds all trees as flat node arrays and a batch walks them together.
:class:`FastTrees` is what a fitted model (stacker, cost model, verifier) keeps: the ensemble built lazily once
over its boosters, proved against XGBoost on probe rows, and XGBoost's ``inplace_predict`` (no DMatrix per call)
whenever the ensemble cannot reproduce it. So training, evaluation and the runtime share one predict path.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

NO_FAST_TREES_ENV = "ACO_BERT_NO_FAST_TREES"  # set: always use XGBoost's own predict
CHECK_TOL = 1e-5  # largest |difference| to XGBoost on the probe rows for the fast path to be used
CHUNK_NODES = 1 << 21  # rows x trees descended at once (bounds the memory of large offline batches)


class TreeEnsemble:
    """Several XGBoost boosters evaluated together in numpy: (n, F) inputs -> (n, K) predictions, one per booster.

    Exactness: splits are XGBoost's (float32 ``x < threshold``, missing -> the node's default direction); the
    base margin is read off XGBoost itself (its margin minus the tree sum on a probe row), and :meth:`check`
    compares against ``inplace_predict`` on probe rows -- any disagreement (an unsupported model type, a format
    change) makes :func:`fast_forest` return None and callers use XGBoost.
    """

    SUPPORTED = {"binary:logistic": "sigmoid", "reg:squarederror": "identity", "reg:linear": "identity"}

    def __init__(self, boosters: Sequence[Any], n_features: int):
        feat, thr, left, right, dleft, val, starts, roots = [], [], [], [], [], [], [], []
        self.links: list[str] = []
        depth, total, n_trees = 1, 0, 0
        for b in boosters:
            m = json.loads(b.save_raw("json"))
            learner = m["learner"]
            gb = learner["gradient_booster"]
            obj = learner["objective"]["name"]
            if gb.get("name") != "gbtree" or obj not in self.SUPPORTED:
                raise NotImplementedError(f"booster {gb.get('name')}/{obj}")
            self.links.append(self.SUPPORTED[obj])
            starts.append(n_trees)
            for tree in gb["model"]["trees"]:
                if any(tree.get("split_type", [])) or tree.get("categories"):
                    raise NotImplementedError("categorical splits")
                lc = np.asarray(tree["left_children"], dtype=np.int64)
                rc = np.asarray(tree["right_children"], dtype=np.int64)
                n = len(lc)
                leaf = lc == -1
                idx = np.arange(n)
                feat.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
                cond = np.asarray(tree["split_conditions"], dtype=np.float32)
                thr.append(np.where(leaf, np.float32(0), cond))
                val.append(np.where(leaf, cond, np.float32(0)))
                left.append(np.where(leaf, idx, lc) + total)  # a leaf points at itself: fixed-depth descent
                right.append(np.where(leaf, idx, rc) + total)
                dleft.append(np.asarray(tree["default_left"], dtype=bool))
                roots.append(total)
                depth = max(depth, self._depth(lc, rc))
                total += n
                n_trees += 1
        self.n_features = int(n_features)
        self.feat, self.thr = np.concatenate(feat), np.concatenate(thr).astype(np.float32)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.dleft, self.val = np.concatenate(dleft), np.concatenate(val).astype(np.float32)
        self.roots, self.starts, self.depth = np.asarray(roots), np.asarray(starts), depth
        self.n_trees = n_trees
        # child[2 * node + go_left]: one gather per level instead of where(go_left, left[node], right[node])
        self.child = np.stack([self.right, self.left], axis=1).ravel()
        self.sigmoid_cols = np.array([k for k, link in enumerate(self.links) if link == "sigmoid"], dtype=np.intp)
        self.offset = np.zeros(len(boosters))
        probe = self._probe(4)
        margin = np.stack([b.inplace_predict(probe, predict_type="margin") for b in boosters], axis=1)
        self.offset = (margin - self.margins(probe)).mean(axis=0)

    @staticmethod
    def _depth(lc: np.ndarray, rc: np.ndarray) -> int:
        d, frontier = 0, [0]
        while frontier:
            nxt = [c for i in frontier for c in (lc[i], rc[i]) if c != -1]
            d, frontier = d + (1 if nxt else 0), nxt
        return max(d, 1)

    def _probe(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((n, self.n_features)) * 2).astype(np.float32)
        x[1, ::3] = np.nan
        # rows that sit right at split thresholds exercise both sides of many splits
        used = self.feat[self.left != np.arange(len(self.left))]
        cut = self.thr[self.left != np.arange(len(self.left))]
        if used.size:
            x[2, used] = cut
            x[3, used] = np.nextafter(cut, np.float32(-np.inf))
        return x

    def margins(self, x: np.ndarray) -> np.ndarray:
        """(n, K) raw margins (before the link). Each row is computed on its own: chunking rows changes nothing."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = max(1, CHUNK_NODES // max(self.n_trees, 1))
        if x.shape[0] > step:
            return np.concatenate([self.margins(x[s: s + step]) for s in range(0, x.shape[0], step)])
        n = x.shape[0]
        node = np.broadcast_to(self.roots, (n, self.n_trees)).copy()
        if x.ndim == 2 and x.shape[1] == self.n_features:
            # flat gathers (take) on the row-major input: same nodes as the 2-D indexing below, fewer numpy calls
            flat, base = x.ravel(), np.arange(0, n * self.n_features, self.n_features)[:, None]
            for _ in range(self.depth):
                v = flat.take(self.feat.take(node) + base)
                go_left = np.where(np.isnan(v), self.dleft.take(node), v < self.thr.take(node))
                node = self.child.take(2 * node + go_left)
        else:
            rows = np.arange(n)[:, None]
            for _ in range(self.depth):
                v = x[rows, self.feat[node]]
                go_left = np.where(np.isnan(v), self.dleft[node], v < self.thr[node])
                node = np.where(go_left, self.left[node], self.right[node])
        vals = self.val.take(node).astype(np.float64)
        return np.add.reduceat(vals, self.starts, axis=1) + self.offset

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, K) predictions: sigmoid of the margin for ``binary:logistic`` boosters, the margin otherwise."""
        m = self.margins(x)
        if self.sigmoid_cols.size:  # all sigmoid columns in one call (elementwise: the same numbers per column)
            k = self.sigmoid_cols
            m[:, k] = 1.0 / (1.0 + np.exp(-m[:, k]))
        return m

    def check(self, boosters: Sequence[Any], tol: float = CHECK_TOL) -> float:
        """Largest |difference| to XGBoost's own predictions on probe rows (callers fall back above ``tol``)."""
        x = np.concatenate([self._probe(4), np.random.default_rng(1).uniform(-5, 5, (12, self.n_features))
                            .astype(np.float32)])
        want = np.stack([b.inplace_predict(x) for b in boosters], axis=1)
        return float(np.max(np.abs(self.predict(x) - want)))


def fast_forest(boosters: Sequence[Any], n_features: int | None = None) -> TreeEnsemble | None:
    """A :class:`TreeEnsemble` over the non-None ``boosters`` if it reproduces XGBoost, else None."""
    live = [b for b in boosters if b is not None]
    if not live or os.environ.get(NO_FAST_TREES_ENV):
        return None
    try:
        te = TreeEnsemble(live, live[0].num_features() if n_features is None else n_features)
        return te if te.check(live) <= CHECK_TOL else None
    except Exception:  # an optimisation only: anything unexpected -> XGBoost's own predict
        return None


class FastTrees:
    """The fast predict of one model's boosters: a :func:`fast_forest` built on first use, else ``inplace_predict``.

    Rebuilt when the model's boosters are replaced (it remembers which booster objects it was built from). The
    built state is one tuple assigned at once, so concurrent first calls at worst build it twice.
    """

    def __init__(self) -> None:
        self._state: tuple[list[Any], TreeEnsemble | None] | None = None

    def forest(self, boosters: Sequence[Any]) -> TreeEnsemble | None:
        """The ensemble over the non-None ``boosters`` (None: XGBoost's own predict is used)."""
        live = [b for b in boosters if b is not None]
        state = self._state
        if state is None or len(state[0]) != len(live) or any(a is not b for a, b in zip(state[0], live)):
            state = (live, fast_forest(live))
            self._state = state
        return state[1]

    def predict(self, boosters: Sequence[Any], x: np.ndarray) -> np.ndarray:
        """(n, K) predictions of the K non-None ``boosters`` on the design matrix ``x`` (float32).

        The fast path returns float64; the fallback returns XGBoost's float32 outputs unchanged (callers that
        transform them, e.g. ``exp``, then compute exactly what they computed on ``Booster.predict``'s output)."""
        te = self.forest(boosters)
        if te is not None:
            return te.predict(x)
        live = [b for b in boosters if b is not None]
        return np.stack([b.inplace_predict(x) for b in live], axis=1) if live else np.empty((len(x), 0))
