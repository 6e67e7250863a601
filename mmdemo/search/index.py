"""Inner-product vector index with our own int64 ids: exact by default, IVF above a size.

Exact: `IndexIDMap2(IndexFlatIP)`. A single query is scanned with one torch matrix-vector
product over FAISS's own vector storage (a zero-copy view): FAISS scans one query on one thread,
~2.5x the time it takes to read the vectors once; the torch scan uses every core and runs near
that memory-bandwidth floor (`bench/bench_search.py`). Batches of queries go through FAISS.

ANN: `IndexIVFFlat`, built when the index outgrows `ann_threshold`. `nprobe` is calibrated at
build time: the smallest power of two whose recall@10 against exact search is >= the target on
held-out queries (half random directions, half perturbed stored vectors). On clustered data
(real photo embeddings) that probes a few lists; on structureless random vectors it has to
probe most of them and is no faster than exact search, but it keeps its recall promise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mmdemo.models import compute

# A faiss index. Its SWIG bindings declare every index as `object` (no attributes): the calls on
# them are checked by tests/test_search.py, not by the type checker.
FaissIndex = Any

RECALL_TARGET = 0.97  # calibration target; the promise is >= 0.95 on unseen queries
_TORCH_SCAN_MAX_QUERIES = 16


class VectorIndex:
    """Unit vectors under int64 ids; `search` returns (scores, ids) best first, -1 ids for padding."""

    def __init__(self, dim: int, ann_threshold: int = 0, index: FaissIndex | None = None):
        import faiss

        self.dim = dim
        self.ann_threshold = ann_threshold  # 0: always exact
        self.index: FaissIndex = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._views: tuple[np.ndarray, Any, np.ndarray] | None = None  # (ids, torch vectors, row of each id)
        # What the last filter's ids were turned into (rows, a mask, a selector), kept with those ids: the same
        # filter searched again (a re-rank's second pass, new words) costs nothing more (mmdemo.photos.table).
        self._filter: tuple[np.ndarray, Any] | None = None

    @property
    def kind(self) -> str:
        """ "exact" or "ivf"."""
        return "ivf" if "IVF" in type(self.index).__name__ else "exact"

    @property
    def nprobe(self) -> int:
        """Lists probed per query (IVF), 0 for exact."""
        return int(self.index.nprobe) if self.kind == "ivf" else 0

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids; may switch to IVF when the size crosses `ann_threshold`."""
        self._views = self._filter = None
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))
        if self.kind == "exact" and self.ann_threshold and len(self) > self.ann_threshold:
            self.index = build_ivf(*self._stored())

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were there."""
        import faiss

        self._views = self._filter = None
        return int(self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, np.int64))))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; rows padded with (-inf, -1) past the index size.

        With `allowed` (ids), only those are candidates: the filter acts inside the scan (scores of the
        others masked before the top-k; an ID selector in FAISS), never by fetching more and dropping.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        size = len(self) if allowed is None else min(len(self), len(allowed))
        k = max(1, min(k, size)) if size else 0
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind == "exact" and len(queries) <= _TORCH_SCAN_MAX_QUERIES:
            return compute.run(self._scan, queries, k, allowed)
        if allowed is not None:
            return self._selected(queries, k, np.asarray(allowed, np.int64))
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def _selected(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's search restricted to `allowed` by a bitmap ID selector (one bit per id: built in a
        millisecond for a million, where a hash set of them takes tens). An IVF index probes more lists the
        fewer vectors are allowed (up to 2x), so that enough candidates remain."""
        import faiss

        selector = self._built(allowed, self._selector)
        params: FaissIndex  # SWIG objects (see FaissIndex): their keyword arguments are not in faiss's stubs
        if self.kind == "ivf":
            share = len(allowed) / max(len(self), 1)
            nprobe = min(int(self.index.nlist), int(np.ceil(self.index.nprobe * min(2.0, share**-0.25))))
            params = getattr(faiss, "SearchParametersIVF")(sel=selector[0], nprobe=nprobe)  # noqa: B009
        else:
            params = getattr(faiss, "SearchParameters")(sel=selector[0])  # noqa: B009
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def _built(self, allowed: np.ndarray, build: Any) -> Any:
        """build(allowed), kept while the same `allowed` array is searched again (see __init__)."""
        if self._filter is None or self._filter[0] is not allowed:
            self._filter = (allowed, build(allowed))
        return self._filter[1]

    @staticmethod
    def _selector(allowed: np.ndarray) -> tuple[Any, np.ndarray]:
        """A FAISS bitmap selector of these ids, with the bitmap it reads (kept alive beside it)."""
        import faiss

        bits = np.zeros(int(allowed.max()) + 1, bool)
        bits[allowed] = True
        bitmap = np.packbits(bits, bitorder="little")
        return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap  # its size in bytes

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero-copy views of the exact index's ids and vectors (valid until the next add)."""
        import faiss

        n = len(self)
        flat: FaissIndex = faiss.downcast_index(self.index.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n) if n else np.zeros(0, np.int64)
        return ids, vectors

    def _scan(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if self._views is None:
            ids, vectors = self._stored()
            ids = np.asarray(ids)
            # Where each id's vector is: a filter's ids become rows in O(allowed), not a search of `ids`.
            row_of = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, np.int64)
            row_of[ids] = np.arange(len(ids))
            self._views = (ids, torch.from_numpy(vectors), row_of)
        ids, stored, row_of = self._views
        with torch.inference_mode():
            if allowed is None:
                scores = stored @ torch.from_numpy(queries).T  # (N, Q): one pass over the vectors
                top = torch.topk(scores, k, dim=0)
                return top.values.T.numpy(), ids[top.indices.T.numpy()]
            rows, keep = self._built(allowed, self._rows)
            if keep is None:  # a narrow filter: score only its rows
                scores = stored[rows] @ torch.from_numpy(queries).T
                top = torch.topk(scores, min(k, len(rows)), dim=0)
                return top.values.T.numpy(), ids[rows.numpy()[top.indices.T.numpy()]]
            scores = stored @ torch.from_numpy(queries).T  # a broad one: one pass, the others masked
            top = torch.topk(scores + keep, min(k, len(rows)), dim=0)
            return top.values.T.numpy(), ids[top.indices.T.numpy()]

    def _rows(self, allowed: np.ndarray) -> tuple[Any, Any]:
        """The rows of these ids; for a broad filter (a quarter of the rows or more) also a mask to add to
        the scores (0 for its rows, -inf for the others): one pass over all the vectors beats gathering most."""
        import torch

        assert self._views is not None
        ids, _, row_of = self._views
        allowed = np.asarray(allowed, np.int64)
        rows = row_of[allowed[(allowed >= 0) & (allowed < len(row_of))]]
        rows = torch.from_numpy(rows[rows >= 0])
        if len(rows) * 4 < len(ids):
            return rows, None
        keep = torch.full((len(ids), 1), float("-inf"))
        keep[rows] = 0.0
        return rows, keep

    def save(self, path: Path) -> None:
        """Write to `path` atomically: a temp file in the same folder, fsynced, then renamed."""
        import faiss

        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dim: int, ann_threshold: int = 0) -> VectorIndex:
        """Read an index written by `save`."""
        import faiss

        return cls(dim, ann_threshold, faiss.read_index(str(path)))


def build_ivf(ids: np.ndarray, vectors: np.ndarray, target: float = RECALL_TARGET, seed: int = 0) -> FaissIndex:
    """An IVF index over (ids, vectors), trained on a sample, nprobe calibrated to `target` recall@10."""
    import faiss

    n, dim = vectors.shape
    rng = np.random.default_rng(seed)
    nlist = int(np.clip(4 * np.sqrt(n), 16, 8192))
    train = vectors[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(np.ascontiguousarray(train))
    ivf.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids, dtype=np.int64))
    ivf.nprobe = calibrate_nprobe(ivf, ids, vectors, target, rng)
    return ivf


def calibration_queries(vectors: np.ndarray, rng: np.random.Generator, count: int = 200) -> np.ndarray:
    """Half random unit directions, half stored vectors with noise: unseen, realistic queries."""
    dim = vectors.shape[1]
    random = rng.standard_normal((count // 2, dim)).astype(np.float32)
    near = vectors[rng.choice(len(vectors), size=count - count // 2)] + rng.standard_normal(
        (count - count // 2, dim)
    ).astype(np.float32) * (0.5 / np.sqrt(dim))
    queries = np.concatenate([random, near])
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` (ids) present in the same row of `found`."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def calibrate_nprobe(
    ivf: FaissIndex, ids: np.ndarray, vectors: np.ndarray, target: float, rng: np.random.Generator, k: int = 10
) -> int:
    """Smallest power-of-two nprobe reaching `target` recall@k against exact search."""
    import faiss

    queries = calibration_queries(vectors, rng)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors))
    _, rows = exact.search(queries, k)
    truth = np.asarray(ids)[rows]
    nprobe = 1
    while nprobe < ivf.nlist:
        ivf.nprobe = nprobe
        _, found = ivf.search(queries, k)
        if recall_at_k(found, truth) >= target:
            return nprobe
        nprobe *= 2
    return int(ivf.nlist)
