"""Append-only CSV ledgers beside a catalogue (merchandisers' marks, label fixes, duplicate verdicts): each row says who
and when; a row is added by rewriting the whole file through a temporary file and one rename, under a lock, so a crash
or two people saving at once never leaves a half-written or lost row."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd
from filelock import FileLock

from ..errors import VibeError
from ..util.files import atomic_path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_ledger(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Every row of the ledger as strings (an empty table when there is none)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=list(columns))
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def append_row(path: Path, columns: tuple[str, ...], make_row: Callable[[pd.DataFrame], dict], what: str) -> dict:
    """Add the row `make_row(rows so far)` gives (read under the lock, so it sees every earlier row)."""
    path = Path(path)
    try:
        with FileLock(str(path) + ".lock", timeout=10):
            rows = read_ledger(path, columns)
            row = make_row(rows)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows([*rows.to_dict("records"), row])
            with atomic_path(path) as tmp:
                tmp.write_text(buf.getvalue(), encoding="utf-8")
    except OSError as e:
        raise VibeError(f"Could not save the {what} in {path} ({e.strerror or e}): the catalogue folder must be "
                        f"writable. Nothing was lost; the earlier {what}s are as they were.") from None
    return row
