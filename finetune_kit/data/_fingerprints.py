"""Find repeated examples across a file of any size in bounded memory.

Exact duplicate detection must remember every example seen. A dict of 64-bit fingerprints
costs about 100 bytes per example, which for a few hundred thousand examples would dominate
preflight's memory; so the index keeps a dict for small inputs and moves to a temporary
on-disk SQLite table (a B-tree keyed by fingerprint, with a 2 MB page cache) once it
holds ``spill_after`` entries. Memory then stays flat whatever the file's size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["FingerprintIndex", "Repeat"]

Repeat = tuple[int, int, int]
"""``(line, first_file, first_line)``: a line that repeats ``first_line`` of file
``first_file`` (the tag given to ``add``)."""

_SQL_PARAMS = 500  # parameters per IN (...) query, well under SQLite's limit


class FingerprintIndex:
    """Remembers example fingerprints and reports the ones seen before.

    Args:
        spill_after: Entries kept in memory before moving to a temporary SQLite table.

    Example:
        >>> index = FingerprintIndex()
        >>> index.add([11, 22, 11], [1, 2, 3], tag=0)
        [(3, 0, 1)]
        >>> index.add([22], [1], tag=1)
        [(1, 0, 2)]
        >>> index.close()
    """

    def __init__(self, spill_after: int = 20_000) -> None:
        self._memory: dict[int, int] = {}
        self._db: sqlite3.Connection | None = None
        self._spill_after = spill_after

    def add(self, fingerprints: Sequence[int], lines: Sequence[int], *, tag: int) -> list[Repeat]:
        """Add a batch of fingerprints in line order; return those already seen.

        Args:
            fingerprints: 63-bit fingerprints.
            lines: The line of each.
            tag: A small integer naming the file (0 training, 1 validation).

        Returns:
            One ``Repeat`` per fingerprint seen before (earlier in this batch included).
        """
        if self._db is None:
            repeats = self._add_in_memory(fingerprints, lines, tag)
            if len(self._memory) > self._spill_after:
                self._spill()
            return repeats
        return self._add_to_db(self._db, fingerprints, lines, tag)

    def _add_in_memory(
        self, fingerprints: Sequence[int], lines: Sequence[int], tag: int
    ) -> list[Repeat]:
        memory = self._memory
        repeats: list[Repeat] = []
        for key, line in zip(fingerprints, lines, strict=True):
            first = memory.get(key)
            if first is None:
                memory[key] = line << 1 | tag
            else:
                repeats.append((line, first & 1, first >> 1))
        return repeats

    def _spill(self) -> None:
        # "" opens a private temporary database on disk, deleted when closed.
        db = sqlite3.connect("")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-2048")  # KiB: a 2 MB page cache
        db.execute("CREATE TABLE seen (fp INTEGER PRIMARY KEY, first INTEGER NOT NULL)")
        db.executemany("INSERT INTO seen VALUES (?, ?)", self._memory.items())
        self._memory = {}
        self._db = db

    def _add_to_db(
        self, db: sqlite3.Connection, fingerprints: Sequence[int], lines: Sequence[int], tag: int
    ) -> list[Repeat]:
        keys = list(fingerprints)
        known: dict[int, int] = {}
        for start in range(0, len(keys), _SQL_PARAMS):
            part = keys[start : start + _SQL_PARAMS]
            marks = ",".join("?" * len(part))
            known.update(db.execute(f"SELECT fp, first FROM seen WHERE fp IN ({marks})", part))
        fresh: dict[int, int] = {}
        repeats: list[Repeat] = []
        for key, line in zip(keys, lines, strict=True):
            first = known.get(key)
            if first is None:
                first = fresh.get(key)
            if first is None:
                fresh[key] = line << 1 | tag
            else:
                repeats.append((line, first & 1, first >> 1))
        db.executemany("INSERT INTO seen VALUES (?, ?)", fresh.items())
        return repeats

    def close(self) -> None:
        """Forget everything (and delete the temporary table)."""
        self._memory = {}
        if self._db is not None:
            self._db.close()
            self._db = None
