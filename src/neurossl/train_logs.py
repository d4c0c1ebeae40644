"""Per-step training logs that survive a killed job.

Why a module of its own: Snakemake deletes a failed job's declared outputs, so a log
kept only at the declared path would lose the steps before a resumption. The live log
therefore sits in the run's checkpoint folder (never a declared output), next to the
checkpoint it must agree with, and is *published* to the declared path, whole, only
when the stage ends. Every training stage, one phase or several, goes through
:func:`publish`, and the report checks the same invariant with :func:`step_gaps`.

Invariant: a log (or each phase of a merged log) holds the steps 1..N, once each, in
order. A log that does not is refused with its path, never plotted or published.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from neurossl.atomic import atomic_path

#: File name of the live log inside a checkpoint folder.
LIVE_LOG = "train_log.csv"
#: Column naming the phase of a stage in a merged log (absent in one-phase logs).
PHASE = "phase"
#: Column of a pretraining log with the input tokens the step's batch fed the backbone
#: (an objective's loss reports it; the report sums it into the pretraining budget).
TOKENS = "tokens"


def step_gaps(steps: Sequence[int]) -> str | None:
    """Why ``steps`` are not 1..N in order (None when they are)."""
    for expected, step in enumerate(steps, start=1):
        if step != expected:
            return f"expected step {expected}, found {step}"
    return None


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _steps(rows: Sequence[dict[str, str]], path: Path) -> list[int]:
    try:
        return [int(float(row["step"])) for row in rows]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: training log has an unreadable 'step' ({err})") from err


class StepLog:
    """The live per-step CSV log of one engine run, inside its checkpoint folder.

    On resume it keeps exactly the steps the checkpoint covers (1..``keep_until``) and
    swaps the truncated file in atomically; rows after them are recomputed. Each row is
    appended with one ``write`` of a whole line, so a kill leaves at most one partial
    line, which lies past the checkpoint and is dropped on resume.
    """

    def __init__(self, path: Path, keep_until: int, enabled: bool) -> None:
        self.path, self.enabled = Path(path), enabled
        self.fields: list[str] | None = None
        if not enabled:
            return
        rows: list[dict[str, str]] = []
        if keep_until > 0:
            if not self.path.exists():
                raise ValueError(
                    f"{self.path}: missing, but the checkpoint beside it is at step "
                    f"{keep_until}; delete {self.path.parent} to start this run over"
                )
            fields, rows = _read(self.path)
            rows = rows[:keep_until]
            gaps = step_gaps(_steps(rows, self.path))
            if len(rows) < keep_until or gaps or any(None in r.values() for r in rows):
                raise ValueError(
                    f"{self.path}: log does not cover the checkpoint's steps 1..{keep_until} "
                    f"({gaps or f'{len(rows)} complete rows'}); delete {self.path.parent} "
                    "to start this run over"
                )
            self.fields = fields
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            if self.fields:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        text = io.StringIO()
        if self.fields is None:
            self.fields = list(row)
            csv.DictWriter(text, fieldnames=self.fields).writeheader()
        if set(row) != set(self.fields):
            raise ValueError(
                f"{self.path}: loss_fn metrics changed keys from {sorted(self.fields)} to "
                f"{sorted(row)}; return the same keys every step"
            )
        csv.DictWriter(text, fieldnames=self.fields).writerow(row)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.getvalue().encode())
        finally:
            os.close(fd)


def publish(parts: Sequence[tuple[str | None, Path]], target: Path) -> None:
    """Write the complete log of a stage to ``target`` atomically.

    ``parts`` are (phase, live log) in the order the phases ran; with one part and no
    phase name the log is copied as it is, otherwise every row gets a ``phase`` column.
    Each part must hold steps 1..N (a resumed run's log does, see :class:`StepLog`).
    """
    merged: list[dict[str, str]] = []
    columns: list[str] = [] if len(parts) == 1 and parts[0][0] is None else [PHASE]
    for phase, path in parts:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: training log of phase {phase!r} is missing")
        fields, rows = _read(path)
        gaps = step_gaps(_steps(rows, path))
        if gaps:
            raise ValueError(f"{path}: incomplete training log ({gaps})")
        columns.extend(k for k in fields if k not in columns)
        merged.extend(rows if phase is None else ({PHASE: phase} | row for row in rows))
    with atomic_path(target) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(merged)
