"""``OUT/manifest.jsonl``: what a restore run did with each input, one JSON object per line.

An archive restored over days needs a record that outlives the terminal: which scans were
restored (how, at what size, in how long), which were skipped because their output existed,
and which failed and why. Every engine writes the same rows through :class:`ManifestWriter`;
a rerun appends, so the last row of an input is its current state.

Row fields: ``input``, ``output``, ``status`` (``restored`` / ``skipped`` / ``failed``),
``error`` (the message of a failure, else null), ``mode`` (``quality`` / ``scratch`` / ``hr``),
``size`` (``[width, height]`` of the input), ``seconds`` (wall time of that input), ``time``
(UTC, ISO 8601, when the row was written).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import OutputError

__all__ = ["MANIFEST_NAME", "STATUSES", "ManifestRow", "ManifestWriter", "Tally",
           "read_manifest", "last_rows"]

MANIFEST_NAME = "manifest.jsonl"
STATUSES = ("restored", "skipped", "failed")


@dataclass(frozen=True)
class ManifestRow:
    """One input's outcome (see the module docstring for the fields)."""

    input: str
    output: str | None
    status: str
    error: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


class Tally:
    """A run's outcome for its summary, in memory that does not grow with the archive: counts
    per status, every failed row (each is reported), and the first :attr:`SHOWN` skipped rows
    (a resumed run of a million scans skips a million; the manifest lists them all)."""

    SHOWN = 20

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.failed: list[ManifestRow] = []
        self.skipped: list[ManifestRow] = []

    def add(self, row: ManifestRow) -> None:
        self.counts[row.status] += 1
        if row.status == "failed":
            self.failed.append(row)
        elif row.status == "skipped" and len(self.skipped) < self.SHOWN:
            self.skipped.append(row)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class ManifestWriter:
    """Appends rows to ``outdir/manifest.jsonl``, each flushed as soon as it is written, so a
    run that is killed keeps the record of everything it finished.

    Raises:
        OutputError: the manifest cannot be opened or written.
    """

    def __init__(self, outdir: str | os.PathLike[str]) -> None:
        self.path = Path(outdir) / MANIFEST_NAME
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot be written: {exc.strerror or exc}") from exc

    def write(self, row: ManifestRow) -> None:
        record: dict[str, Any] = asdict(row)
        if row.size is not None:
            record["size"] = list(row.size)
        if row.seconds is not None:
            record["seconds"] = round(row.seconds, 3)
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot be written: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a manifest, in order. A line that is not JSON (the last line of a run
    killed while writing it) is left out rather than failing the reader."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def last_rows(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``input -> its last row``: each input's current state after any number of reruns."""
    return {row["input"]: row for row in read_manifest(path) if "input" in row}
