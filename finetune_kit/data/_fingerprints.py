"""Find repeated examples across files of any size in bounded memory.

Exact duplicate detection must remember every example seen. A dict of 64-bit fingerprints
costs about 100 bytes per example, which for a few hundred thousand examples would dominate
preflight's memory; so the index keeps its log in memory for small inputs and moves it to a
temporary on-disk SQLite table once it holds ``spill_after`` entries. Appending to that table
is cheap; the repeats are found once, at the end, by one grouped query that SQLite sorts with
a 2 MB page cache, spilling to disk beyond. Memory stays flat whatever the file's size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["FingerprintIndex", "Repeat"]

Repeat = tuple[int, int, int, int]
"""``(tag, line, first_tag, first_line)``: line ``line`` of file ``tag`` repeats line
``first_line`` of file ``first_tag`` (tags are the small integers given to ``add``)."""


class FingerprintIndex:
    """Logs example fingerprints, then reports the ones that repeat an earlier one.

    Args:
        spill_after: Entries kept in memory before moving to a temporary SQLite table.

    Example:
        >>> index = FingerprintIndex()
        >>> index.add([11, 22, 11], [1, 2, 3], tag=0)
        >>> index.add([22], [1], tag=1)
        >>> index.repeats()
        [(0, 3, 0, 1), (1, 1, 0, 2)]
        >>> index.close()
    """

    def __init__(self, spill_after: int = 20_000) -> None:
        self._memory: list[tuple[int, int]] = []
        self._db: sqlite3.Connection | None = None
        self._spill_after = spill_after

    def add(self, fingerprints: Sequence[int], lines: Sequence[int], *, tag: int) -> None:
        """Log a batch of fingerprints, in line order.

        Args:
            fingerprints: 63-bit fingerprints.
            lines: The line of each.
            tag: A small integer naming the file (0 training, 1 validation).
        """
        rows = [(key, line << 1 | tag) for key, line in zip(fingerprints, lines, strict=True)]
        if self._db is not None:
            self._db.executemany("INSERT INTO log VALUES (?, ?)", rows)
            return
        self._memory.extend(rows)
        if len(self._memory) > self._spill_after:
            # "" opens a private temporary database on disk, deleted when closed.
            db = sqlite3.connect("")
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-2048")  # KiB: a 2 MB page cache
            db.execute("CREATE TABLE log (fp INTEGER NOT NULL, at INTEGER NOT NULL)")
            db.executemany("INSERT INTO log VALUES (?, ?)", self._memory)
            self._memory = []
            self._db = db

    def repeats(self) -> list[Repeat]:
        """Every logged entry whose fingerprint was logged before, sorted by tag and line."""
        groups: dict[int, list[int]] = {}
        if self._db is None:
            for key, at in self._memory:
                groups.setdefault(key, []).append(at)
        else:
            query = (
                "SELECT fp, at FROM log WHERE fp IN "
                "(SELECT fp FROM log GROUP BY fp HAVING COUNT(*) > 1) ORDER BY fp, rowid"
            )
            for key, at in self._db.execute(query):
                groups.setdefault(key, []).append(at)
        found: list[Repeat] = []
        for ats in groups.values():
            if len(ats) > 1:
                first = ats[0]
                found.extend((at & 1, at >> 1, first & 1, first >> 1) for at in ats[1:])
        found.sort()
        return found

    def close(self) -> None:
        """Forget everything (and delete the temporary table)."""
        self._memory = []
        if self._db is not None:
            self._db.close()
            self._db = None
