"""The Responses API's memory: responses kept for `previous_response_id`, in one SQLite file.

    store = ResponseStore(Path("responses.sqlite"), max_count=10_000, max_age_s=30 * 86400)
    store.put(owner, response, input_items)      # a Response object as answered, and its input
    store.get(response_id, owner)                # a StoredResponse, or None (unknown, expired, not its owner's)

One row per response: its id, its owner (the hash of the API key that made it, "" on a keyless
server), when it was stored, the Response object as answered (output items, usage, model,
created_at) and its input items: every item the model was given as input, that is the earlier
turns' items (when it continued a stored response) then the request's own `input`. So a
response carries its whole chain: continuing from it reads one row, and deleting or expiring an
earlier link never breaks a later one (the cost: a chain of n turns stores its first turn n
times, bounded by the model's context).

Bounds: a response older than `max_age_s` is gone (`get` says None at once; its row goes at the
next write), and each write prunes the oldest beyond `max_count`.

Threads: one connection shared under a lock (`check_same_thread=False`), so any thread may call
it. A write is one small transaction (an insert and two deletes on an index) in WAL mode with
`synchronous=NORMAL`: it appends to the log with no fsync and takes ~0.3 ms; a read is one
primary-key lookup (~0.04 ms). But every ~18th write also checkpoints (copies the log into the
database and fsyncs), 10-30 ms on this machine (studies/response_store.py), and a read may wait
behind it: so the server calls the store on worker threads, never on its event loop. A crash of
the process loses nothing; a power cut may lose the last writes since a checkpoint, never the
file's consistency. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..engine.errors import OptionsError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    stored_at REAL NOT NULL,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (stored_at);
"""


@dataclass(frozen=True)
class StoredResponse:
    id: str
    response: dict          # the Response object as it was answered
    input_items: list       # what the model was given as input, the earlier turns' items first

    def context(self) -> list:
        """The items a response continuing from this one starts with: its input, then its output."""
        return self.input_items + self.response.get("output", [])


def owner_of(api_key: str | None) -> str:
    """Whose responses a request may see: the API key's SHA-256 (never the key itself), "" without one."""
    return hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""


class ResponseStore:
    """Stored responses in one SQLite file (WAL), bounded by count and age; thread-safe."""

    def __init__(self, path: Path, max_count: int = 10_000, max_age_s: float = 30 * 86400,
                 clock: Callable[[], float] = time.time):
        self.path, self.max_count, self.max_age_s = Path(path), max_count, max_age_s
        self.clock = clock  # seconds; the tests move it forward instead of sleeping
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise OptionsError(f"{self.path} holds stored responses of another ovchat version (schema {version}); "
                                   "delete it, or point responses_db (--responses-db) elsewhere.", param="responses_db")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as error:
            raise OptionsError(f"Cannot keep stored responses in {self.path}: {error}. Point responses_db "
                               "(--responses-db) at a writable file, or turn storing off (--no-store).",
                               param="responses_db") from None

    def put(self, owner: str, response: dict, input_items: list) -> None:
        """Keep `response` (its "id" is the key) and prune what is past the bounds."""
        now = self.clock()
        row = (response["id"], owner, now, json.dumps(response, ensure_ascii=False),
               json.dumps(input_items, ensure_ascii=False))
        with self._lock, self._db:  # one transaction: the insert and the pruning
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", row)
            self._db.execute("DELETE FROM responses WHERE stored_at < ?", (now - self.max_age_s,))
            self._db.execute("DELETE FROM responses WHERE id IN (SELECT id FROM responses ORDER BY stored_at DESC "
                             "LIMIT -1 OFFSET ?)", (self.max_count,))

    def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The response, or None if there is none of that id for `owner` or it has expired."""
        with self._lock:
            row = self._db.execute("SELECT response, input_items FROM responses WHERE id = ? AND owner = ? "
                                   "AND stored_at >= ?", (response_id, owner, self.clock() - self.max_age_s)).fetchone()
        return None if row is None else StoredResponse(response_id, json.loads(row[0]), json.loads(row[1]))

    def delete(self, response_id: str, owner: str) -> bool:
        """Forget the response; False if there was none to forget (unknown, expired, another owner's)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            gone = self._db.execute("DELETE FROM responses WHERE id = ? AND owner = ? AND stored_at >= ?",
                                    (response_id, owner, self.clock() - self.max_age_s)).rowcount
        return gone > 0

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
