"""Usage events that could not reach the database, kept on local disk until it is back.

Each spill is one complete file (written aside, then renamed into place), so a reader never sees half
of one. Any process of any worker or replica sharing the folder may replay a file: it claims it with
a rename, which only one process wins, writes it, then deletes it. A claim whose process died is
taken over after `STALE_CLAIM_S`; writing twice is harmless, since the database skips events it has.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Sequence

import orjson

STALE_CLAIM_S = 300.0


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def spill(self, events: Sequence[object]) -> Path:
        """Write the events to a new journal file; raises OSError when the disk refuses."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{int(time.time())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        aside, final = self.folder / f".{name}.tmp", self.folder / f"{name}.jsonl"
        with open(aside, "wb") as out:
            for event in events:
                out.write(orjson.dumps(event.row()) + b"\n")  # type: ignore[attr-defined]
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, final)
        return final

    def pending(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        now = time.time()
        files = sorted(self.folder.glob("*.jsonl"))
        # Claims left by a process that died mid-replay.
        files += [p for p in sorted(self.folder.glob("*.claimed-*")) if now - _mtime(p) > STALE_CLAIM_S]
        return files

    def claim(self) -> tuple[Path, list[list[object]]] | None:
        """The next file this process wins, claimed, with its events' rows; None when there is none.
        Then `done` (written) or `release` (not written: left for the next attempt)."""
        for path in self.pending():
            claimed = path.with_name(f"{path.name.split('.claimed-')[0]}.claimed-{os.getpid()}")
            try:
                if path != claimed:
                    os.replace(path, claimed)
                os.utime(claimed)
                lines = claimed.read_bytes().splitlines()
            except FileNotFoundError:
                continue  # another process took it
            return claimed, [orjson.loads(line) for line in lines if line.strip()]
        return None

    def release(self, claimed: Path) -> None:
        os.replace(claimed, claimed.with_name(claimed.name.split(".claimed-")[0]))

    def done(self, claimed: Path) -> None:
        claimed.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
