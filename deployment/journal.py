"""A durable journal of dispatch cycles and commands (SQLite), so a crash never duplicates or loses a command.

Every command is written as ``pending`` *before* it is sent and marked ``acked`` / ``refused`` / ``failed``
after; a cycle is marked finished when all its commands have an outcome. On restart the dispatcher reads
the last cycle number (new command ids never reuse an old one) and the commands still ``pending``: those not
yet expired are re-sent with the *same* id, which a device applies once (ids are idempotent keys), and the
expired ones are marked ``expired`` (the device has already reverted to its own control).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from .commands import Command, CtaEvent, Envelope, PowerCommand, ThermostatCommand, WaterHeaterCommand

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cycles (cycle INTEGER PRIMARY KEY, started_at REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, cycle INTEGER, device_id TEXT, kind TEXT, payload TEXT,
    status TEXT, reason TEXT, valid_until REAL);
CREATE INDEX IF NOT EXISTS commands_status ON commands(status);
"""


@dataclass(frozen=True)
class JournalEntry:
    cycle: int
    command: Command
    status: str
    reason: str


def _encode(command: Command) -> tuple[str, str]:
    data = asdict(command)
    if isinstance(command, WaterHeaterCommand):
        data["event"] = command.event.value
    return type(command).__name__, json.dumps(data)


def _decode(kind: str, payload: str) -> Command:
    data = json.loads(payload)
    env = Envelope(**data.pop("envelope"))
    if kind == "PowerCommand":
        return PowerCommand(env, **data)
    if kind == "WaterHeaterCommand":
        return WaterHeaterCommand(env, CtaEvent(data["event"]), data["duration_s"])
    if kind == "ThermostatCommand":
        return ThermostatCommand(env, **data)
    raise ValueError(f"journal: unknown command kind {kind!r}")


class Journal:
    """Cycles and commands in one SQLite file (``:memory:`` for a throwaway one)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; explicit transactions below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
        self._db.executescript(_SCHEMA)

    def last_cycle(self) -> int:
        """The highest cycle number ever started (-1 for a new journal)."""
        row = self._db.execute("SELECT MAX(cycle) FROM cycles").fetchone()
        return -1 if row[0] is None else int(row[0])

    def start_cycle(self, cycle: int, now: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO cycles (cycle, started_at) VALUES (?, ?)", (cycle, now))

    def finish_cycle(self, cycle: int, now: float) -> None:
        self._db.execute("UPDATE cycles SET finished_at = ? WHERE cycle = ?", (now, cycle))

    def record_pending(self, cycle: int, commands: list[Command]) -> list[Command]:
        """Write ``commands`` as pending in one transaction; returns those not already journaled (a command id
        seen before is never sent twice by this dispatcher)."""
        fresh = []
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for c in commands:
                kind, payload = _encode(c)
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO commands VALUES (?, ?, ?, ?, ?, 'pending', '', ?)",
                    (c.envelope.command_id, cycle, c.envelope.device_id, kind, payload, c.envelope.valid_until))
                if cur.rowcount:
                    fresh.append(c)
        return fresh

    def mark(self, command_id: str, status: str, reason: str = "") -> None:
        self.mark_many([(command_id, status, reason)])

    def mark_many(self, outcomes: list[tuple[str, str, str]]) -> None:
        """(command_id, status, reason) of many commands in one transaction (one disk sync per cycle)."""
        for _, status, _ in outcomes:
            if status not in ("acked", "refused", "failed", "expired", "pending"):
                raise ValueError(f"journal status must be acked, refused, failed, expired or pending, got {status!r}")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE commands SET status = ?, reason = ? WHERE command_id = ?",
                                 [(status, reason, cid) for cid, status, reason in outcomes])

    def pending(self) -> list[JournalEntry]:
        rows = self._db.execute(
            "SELECT cycle, kind, payload, status, reason FROM commands WHERE status = 'pending' ORDER BY cycle")
        return [JournalEntry(cycle, _decode(kind, payload), status, reason)
                for cycle, kind, payload, status, reason in rows]

    def status(self, command_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM commands WHERE command_id = ?", (command_id,)).fetchone()
        return None if row is None else str(row[0])

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._db.execute("SELECT COUNT(*) FROM commands").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM commands WHERE status = ?", (status,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()
