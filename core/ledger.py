"""The input ledger: which inputs were ingested, and how far.

Each commit stages one small NDJSON file under ``_state/ledger/`` naming the
inputs it finished or advanced, so the ledger moves exactly with the lake. A
cron re-run skips finished files by size and mtime without reading them, and
resumes a file that grew (or whose ingest was killed) from where the last
commit ended, after checking that the bytes before that point are unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import xxhash

from erp.core.errors import LakeError
from erp.core.lake import Lake
from erp.core.sources import TAIL_BYTES  # one definition, shared with the reader

LEDGER_DIR = "ledger"


@dataclass
class LedgerEntry:
    key: str
    size: int | None
    mtime: float | None
    offset: int  # bytes of the (decompressed) stream committed
    line: int  # next line number
    tail: str  # xxh3 of the last TAIL_BYTES before offset
    done: bool
    commit: str = ""


def tail_hash(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data[-TAIL_BYTES:])


class Ledger:
    def __init__(self, entries: dict[str, LedgerEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, lake: Lake) -> "Ledger":
        entries: dict[str, LedgerEntry] = {}
        for path in lake.list_files(lake.state(LEDGER_DIR), ".ndjson"):  # sorted = commit order
            for n, raw in enumerate(lake.read_bytes(path).splitlines(), 1):
                if raw.strip():
                    try:
                        e = LedgerEntry(**json.loads(raw))
                    except (ValueError, TypeError) as exc:
                        raise LakeError(f"the input ledger is damaged at {path}:{n}: {exc}", path=path,
                                        hint="restore the file from a backup, or delete it: the inputs it "
                                             "lists are then read again (stored events are not doubled)") from exc
                    entries[e.key] = e
        return cls(entries)

    def get(self, key: str) -> LedgerEntry | None:
        return self.entries.get(key)

    @staticmethod
    def encode(entries: list[LedgerEntry]) -> bytes:
        return b"".join(json.dumps(asdict(e), sort_keys=True).encode() + b"\n" for e in entries)

    def update(self, entries: list[LedgerEntry]) -> None:
        for e in entries:
            self.entries[e.key] = e
