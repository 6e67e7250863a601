"""The search box's filters (mmdemo.photos.filters) over galleries: which ids pass, a listing by date.

Each gallery's facts table (mmdemo.photos.table) is built once and kept until the gallery or what
its stages read changes; a filter is then a mask over it, and its ids go into the vector search
(mmdemo.search.index: scores of the others masked before the top-k).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.photos.filters import Filters
from mmdemo.photos.store import Columns
from mmdemo.photos.table import FactsTable, date_key
from mmdemo.search.held import OPEN_STORES
from mmdemo.search.store import Hit, Scores

if TYPE_CHECKING:
    from mmdemo.photos.stage import PhotoStage
    from mmdemo.search.gallery import Named
    from mmdemo.text.stage import TextStage


log = logging.getLogger(__name__)
BUILD_HERE_MAX = 20_000  # a table this small is rebuilt by the search that finds it stale (~50 ms)


class Filtering:
    """Filters over the galleries searched, with the facts each hit shows."""

    def __init__(self, photos: PhotoStage | None, text: TextStage | None):
        self.photos, self.text = photos, text
        self._tables: OrderedDict[str, tuple[tuple[object, ...], FactsTable]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: set[str] = set()  # galleries whose table is being rebuilt in the background

    def table(self, named: Named) -> FactsTable:
        """The facts table of a gallery: rebuilt after a change — here and now for a small gallery; for a big
        one (a rebuild takes seconds a million images) on a thread of its own, the last table answering
        meanwhile (what changed since is found by the filters once the rebuild is done)."""
        version = self._version(named)
        with self._lock:
            cached = self._tables.get(named.name)
            if cached is not None:
                self._tables.move_to_end(named.name)
                if cached[0] == version:
                    return cached[1]
                if len(cached[1]) > BUILD_HERE_MAX:
                    if named.name not in self._building:
                        self._building.add(named.name)
                        threading.Thread(target=self._rebuild, args=(named, version), daemon=True).start()
                    return cached[1]
        return self._build(named, version)

    def _version(self, named: Named) -> tuple[object, ...]:
        store = named.gallery.store
        return (
            id(store),
            store.generation,
            self.photos.store(named.name).version() if self.photos else None,
            self.text.store(named.name).version() if self.text else None,
        )

    def _rebuild(self, named: Named, version: tuple[object, ...]) -> None:
        try:
            self._build(named, version)
        except Exception:  # a background thread: nobody else would see it; the last table stays
            log.exception("rebuilding the facts table of %s failed", named.name)
        finally:
            with self._lock:
                self._building.discard(named.name)

    def _build(self, named: Named, version: tuple[object, ...]) -> FactsTable:
        items = named.gallery.store.items()  # in id order: the ids stay sorted (mmdemo.search.ranking relies on it)
        ids = np.fromiter((it.id for it in items), np.int64, len(items))
        facts = self.photos.store(named.name).columns() if self.photos else Columns([], [], [], [], [], [])
        with_text = self.text.store(named.name).with_text() if self.text else set()
        hashes, names, moments = [it.hash for it in items], [it.name for it in items], [it.moment for it in items]
        table = FactsTable(ids, hashes, names, facts, with_text, moments)
        with self._lock:
            self._tables[named.name] = (version, table)
            self._tables.move_to_end(named.name)
            while len(self._tables) > OPEN_STORES + 1:  # bounded like the stores (private galleries' are small)
                self._tables.popitem(last=False)
        return table

    def allowed(self, named: Named, filters: Filters) -> np.ndarray:
        """The ids of `named`'s images that pass `filters`."""
        return self.table(named).passing(filters)

    def listing(self, named: Sequence[Named], filters: Filters, k: int) -> list[tuple[str, Hit]]:
        """The images that pass `filters`, newest first (`sort:oldest`: oldest), at most `k`: a search of
        filters alone."""
        oldest = filters.sort == "oldest"
        found: list[tuple[float, str, Hit]] = []
        for n in named:
            table = self.table(n)
            for row in table.by_date(np.flatnonzero(table.mask(filters)), oldest)[:k]:
                if (item := n.gallery.store.item(int(table.ids[row]))) is not None:
                    found.append((float(table.taken[row]), n.tag, Hit(item, Scores())))
        keys = date_key(np.array([taken for taken, _, _ in found], np.float64), oldest)
        return [(found[i][1], found[i][2]) for i in np.argsort(keys, kind="stable")][:k]

    def with_facts(self, named: Sequence[Named], hits: Sequence[tuple[str, Hit]]) -> list[tuple[str, Hit]]:
        """The hits with what the photo stage read of each (shown under each result)."""
        if self.photos is None:
            return list(hits)
        names = {n.tag: n.name for n in named}
        return [(tag, replace(hit, facts=self.photos.facts(names[tag], hit.item.hash))) for tag, hit in hits]

    def by_date(self, hits: Sequence[tuple[str, Hit]], oldest: bool = False) -> list[tuple[str, Hit]]:
        """Hits (with their facts) ordered by when they were taken, undated last."""
        dated = [(hit.facts.exif.taken if hit.facts else "", tag, hit) for tag, hit in hits]
        with_date = sorted((d for d in dated if d[0]), key=lambda d: d[0], reverse=not oldest)
        return [(tag, hit) for _, tag, hit in with_date] + [(tag, hit) for when, tag, hit in dated if not when]
