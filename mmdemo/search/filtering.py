"""The search box's filters (mmdemo.photos.filters) over galleries: which ids pass, a listing by date.

Each gallery's facts table (mmdemo.photos.table) is built once and kept until the gallery or what
its stages read changes; a filter is then a mask over it, and its ids go into the vector search
(mmdemo.search.index: scores of the others masked before the top-k).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.photos.filters import Filters
from mmdemo.photos.table import FactsTable, Row, date_key
from mmdemo.search.held import OPEN_STORES
from mmdemo.search.store import Hit, Scores

if TYPE_CHECKING:
    from mmdemo.photos.stage import PhotoStage
    from mmdemo.search.ranking import Named
    from mmdemo.text.stage import TextStage


class Filtering:
    """Filters over the galleries searched, with the facts each hit shows."""

    def __init__(self, photos: PhotoStage | None, text: TextStage | None):
        self.photos, self.text = photos, text
        self._tables: OrderedDict[str, tuple[tuple[object, ...], FactsTable]] = OrderedDict()
        self._lock = threading.Lock()

    def table(self, named: Named) -> FactsTable:
        """The facts table of a gallery, as it is now (rebuilt only after a change)."""
        store = named.gallery.store
        version = (
            id(store),
            store.generation,
            self.photos.store(named.name).version() if self.photos else None,
            self.text.store(named.name).version() if self.text else None,
        )
        with self._lock:
            cached = self._tables.get(named.name)
            if cached is not None and cached[0] == version:
                self._tables.move_to_end(named.name)
                return cached[1]
        rows = [Row(it.id, it.hash, it.name) for it in store.items()]
        facts = self.photos.store(named.name).every() if self.photos else []
        with_text = self.text.store(named.name).with_text() if self.text else set()
        table = FactsTable(rows, facts, with_text)
        with self._lock:
            self._tables[named.name] = (version, table)
            self._tables.move_to_end(named.name)
            while len(self._tables) > OPEN_STORES + 1:  # bounded like the stores (private galleries' are small)
                self._tables.popitem(last=False)
        return table

    def allowed(self, named: Named, filters: Filters) -> np.ndarray:
        """The ids of `named`'s images that pass `filters`."""
        table = self.table(named)
        return table.ids[table.mask(filters)]

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
