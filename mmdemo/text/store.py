"""The text read from a gallery's images, by content hash, searchable with SQLite FTS5.

One SQLite file per gallery (`data_dir/readings/<gallery>/text.sqlite3`), apart from the CLIP
model's store: a gallery re-indexed with another CLIP keeps its text. A `reading` row per image
read (its lines with boxes and confidences as JSON, the text in plain and folded form, or why it
could not be read), and an FTS5 table with the trigram tokenizer over the folded text: it finds
any substring of three characters or more, Chinese included, from an index. Shorter words (a
1-2 character Chinese word) are looked for with `instr` over the folded column instead. Rows are
written in one transaction per batch (WAL), so a crash loses at most the batch being read, and
a hash without a row is simply read again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mmdemo.files import HashedStore
from mmdemo.models.ocr import TextLine
from mmdemo.text.match import TextMatch, match
from mmdemo.text.normalize import fold, has_han, plain
from mmdemo.text.query import FUZZY_FROM, TextQuery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading (
    hash TEXT PRIMARY KEY,
    lines TEXT NOT NULL,
    plain TEXT NOT NULL,
    folded TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS reading_fts USING fts5(folded, tokenize='trigram');
"""
MAX_CANDIDATES = 2000  # images holding every word of a query scored, at most
MAX_BROAD = 200  # images holding some word (or a piece of one) scored per pass, at most
_CHUNK = 500  # hashes per SELECT
HAS_TEXT_CONFIDENCE = 0.8  # a line read at least this surely makes an image one that `has:text`


@dataclass(frozen=True)
class Reading:
    """What the text stage read from one image: its lines, or why it could not."""

    hash: str
    lines: tuple[TextLine, ...] = ()
    error: str = ""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class TextStore(HashedStore):
    """Readings of one gallery (see the module docstring); safe to share between threads."""

    FILE, SCHEMA, TABLE = "text.sqlite3", _SCHEMA, "reading"

    def put(self, readings: Sequence[Reading]) -> None:
        """Store readings in one transaction (a hash read again replaces its row)."""
        rows = [
            (r.hash, json.dumps([line.as_dict() for line in r.lines], ensure_ascii=False), plain(r.text), fold(r.text))
            for r in readings
        ]
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for start in range(0, len(rows), _CHUNK):
                part = rows[start : start + _CHUNK]
                self._replace(part, [(*row, r.error, now) for row, r in zip(part, readings[start:], strict=False)])
            self.writes += 1

    def _replace(self, rows: list[tuple[str, str, str, str]], values: list[tuple[object, ...]]) -> None:
        """Within put's transaction: these rows written, their FTS rows too (they share the rowid: replaced by
        rowid, an indexed delete rather than a scan of the FTS table)."""
        hashes = [row[0] for row in rows]
        marks = ",".join("?" * len(hashes))
        old = self._db.execute(f"SELECT rowid FROM reading WHERE hash IN ({marks})", hashes).fetchall()
        self._db.executemany("DELETE FROM reading_fts WHERE rowid = ?", old)
        self._db.executemany("INSERT OR REPLACE INTO reading VALUES (?, ?, ?, ?, ?, ?)", values)
        self._db.execute(
            f"INSERT INTO reading_fts (rowid, folded) SELECT rowid, folded FROM reading WHERE hash IN ({marks})"
            " AND folded != ''",
            hashes,
        )

    def get(self, content_hash: str) -> Reading | None:
        """The reading of this image, if it was read."""
        with self._lock:
            row = self._db.execute("SELECT lines, error FROM reading WHERE hash = ?", (content_hash,)).fetchone()
        if row is None:
            return None
        return Reading(content_hash, tuple(TextLine.from_dict(d) for d in json.loads(row[0])), row[1])

    def with_text(self) -> set[str]:
        """The hashes of the images some text was read from (the `has:text` filter): a line of two characters
        or more, read with confidence (a lone, doubtful character is the OCR seeing shapes in leaves)."""
        sql = (
            "SELECT hash FROM reading WHERE folded != '' AND EXISTS (SELECT 1 FROM json_each(lines)"
            " WHERE json_extract(value, '$.confidence') >= ? AND length(json_extract(value, '$.text')) >= 2)"
        )
        with self._lock:
            return {row[0] for row in self._db.execute(sql, (HAS_TEXT_CONFIDENCE,))}

    def count(self) -> tuple[int, int]:
        """(images read, images with text)."""
        with self._lock:
            read, texted = self._db.execute("SELECT count(*), count(NULLIF(folded, '')) FROM reading").fetchone()
        return int(read), int(texted)

    def search(self, query: TextQuery, limit: int = 100, marked: int | None = None) -> list[TextMatch]:
        """Images whose text matches `query`, best first (see mmdemo.text.match); the first `marked` (all by
        default) with their lines marked, the others unmarked (`mark` marks one later).

        First the images holding every word as typed (folded), found by the index alone; while they are fewer
        than `limit`, those holding any word, then any half of a long word (for the one edit forgiven).
        """
        if query.empty:
            return []
        terms = [*query.words, *query.required, *(fold(p) for p in query.phrases)]
        found = self._every(terms)
        for fuzzy in (False, True):  # any word; then, still too few, any half of a long word (one edit)
            if len(found) < limit:
                found.update(self._any(terms, set(found), fuzzy))
        scored = [m for h, text in found.items() if (m := match(query, h, text, marked=False)) is not None]
        best = sorted(scored, key=lambda m: (-m.rank_key[0], -m.rank_key[1], m.hash))[:limit]
        # Marked in the lines as read (case and punctuation kept), for the few shown.
        shown = best[:marked] if marked is not None else best
        lines = dict(self._texts([m.hash for m in shown]))
        return [match(query, m.hash, lines[m.hash]) or m for m in shown] + best[len(shown) :]

    def mark(self, query: TextQuery, content_hash: str) -> str:
        """The lines of this image that match `query`, the query's words marked ('' when none)."""
        text = dict(self._texts([content_hash])).get(content_hash, "")
        found = match(query, content_hash, text)
        return found.marked if found else ""

    def _every(self, terms: list[str]) -> dict[str, str]:
        """hash -> plain text of the images whose folded text holds every term."""
        long_terms = [t for t in terms if len(t) >= 3]
        short_terms = [t for t in terms if len(t) < 3]
        where = " AND ".join(["instr(r.folded, ?) > 0"] * len(short_terms)) or "1"
        if long_terms:
            sql = (
                "SELECT r.hash, r.plain FROM reading_fts f JOIN reading r ON r.rowid = f.rowid"
                f" WHERE f.folded MATCH ? AND {where} LIMIT ?"
            )
            args: list[object] = [" AND ".join(_quoted(t) for t in long_terms), *short_terms, MAX_CANDIDATES]
        else:
            sql = f"SELECT r.hash, r.plain FROM reading r WHERE {where} LIMIT ?"
            args = [*short_terms, MAX_CANDIDATES]
        with self._lock:
            return dict(self._db.execute(sql, args).fetchall())

    def _any(self, terms: list[str], exclude: set[str], fuzzy: bool) -> dict[str, str]:
        """hash -> plain text of images whose folded text holds some term of three characters or more, or a
        short Chinese term; `fuzzy`: a half of a term of five or more instead (one edit leaves a half intact)."""
        pieces: set[str] = set()
        short: set[str] = set()
        for term in terms:
            if fuzzy and len(term) >= FUZZY_FROM:
                pieces |= {half for half in (term[: len(term) // 2], term[len(term) // 2 :]) if len(half) >= 3}
            elif not fuzzy and len(term) >= 3:
                pieces.add(term)
            elif not fuzzy and has_han(term):
                short.add(term)
        found: dict[str, str] = {}
        with self._lock:
            if pieces:
                # Unordered: ranking by BM25 here cost 20 ms over 100k texts, and these hold a word or piece each
                # (those holding every word were found first).
                sql = (
                    "SELECT r.hash, r.plain FROM reading_fts f JOIN reading r ON r.rowid = f.rowid"
                    " WHERE f.folded MATCH ? LIMIT ?"
                )
                found.update(self._db.execute(sql, (" OR ".join(map(_quoted, sorted(pieces))), MAX_BROAD)))
            for term in sorted(short):
                sql = "SELECT hash, plain FROM reading WHERE instr(folded, ?) > 0 LIMIT ?"
                found.update(self._db.execute(sql, (term, MAX_CANDIDATES)))
        return {h: text for h, text in found.items() if h not in exclude}

    def _texts(self, hashes: list[str]) -> list[tuple[str, str]]:
        """(hash, the lines' text) of these hashes."""
        out: list[tuple[str, str]] = []
        with self._lock:
            for start in range(0, len(hashes), _CHUNK):
                part = hashes[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT hash, lines FROM reading WHERE hash IN ({marks})", part)
                out += [(h, "\n".join(d["text"] for d in json.loads(lines))) for h, lines in rows]
        return out


def _quoted(term: str) -> str:
    """A term as an FTS5 string (a substring for the trigram tokenizer)."""
    return '"' + term.replace('"', '""') + '"'
