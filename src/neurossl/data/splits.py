"""Dataset splits, computed once per dataset and reused by every method.

``splits.json`` (written by :func:`write_splits`, read by :func:`read_splits`)::

    {
      "dataset": "synthetic", "seed": 0, "format_version": 1,
      "sessions": {"pretrain": [session ids], "heldout": [session ids]},
      "windows": {                        # per session, shared by its modalities
        "<session>": {"start": [s], "stop": [s], "split": ["train"|"valid"|"test"],
                      "trial": [trial row or -1 for continuous blocks]}
      },
      "neurons": {                        # per modality, per session, neuron ids
        "<modality>": {"<session>": {"held_in": [...], "held_out": [...],
                                     "predictable": [...], "unpredictable": [...]}}
      },
      "predictability": {"<modality>": {"skewness_threshold": x, "kurtosis_threshold": y,
                                        "threshold_source": "knee"|"config",
                                        "precision": p|null, "recall": r|null}}
    }

Windows are in seconds so the same split applies to spikes (e.g. 20 ms bins) and
calcium (e.g. 30 Hz frames) of one session. Trial datasets get one window per trial
(align + [pre, post]); continuous recordings get contiguous blocks cut into windows, and
whole blocks are assigned to a split so no window straddles two splits.

Predictability (POYO-SSL) is scored on the *training windows only*: per-neuron skewness
and excess kurtosis of the activity restricted to train windows. A neuron is
"predictable" when both scores are at or below their thresholds (statistically regular,
near-Gaussian traces); heavy-tailed, bursty neurons are "unpredictable".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurossl.atomic import write_json

SPLIT_NAMES = ("train", "valid", "test")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Windows:
    """The windows of one session, parallel arrays in seconds."""

    start: np.ndarray
    stop: np.ndarray
    split: np.ndarray
    trial: np.ndarray

    def select(self, split: str) -> Windows:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected {SPLIT_NAMES}")
        keep = self.split == split
        return Windows(self.start[keep], self.stop[keep], self.split[keep], self.trial[keep])

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def to_json(self) -> dict[str, list[Any]]:
        return {
            "start": [float(x) for x in self.start],
            "stop": [float(x) for x in self.stop],
            "split": [str(x) for x in self.split],
            "trial": [int(x) for x in self.trial],
        }

    @classmethod
    def from_json(cls, payload: dict[str, list[Any]]) -> Windows:
        return cls(
            start=np.asarray(payload["start"], dtype=np.float64),
            stop=np.asarray(payload["stop"], dtype=np.float64),
            split=np.asarray(payload["split"], dtype=object),
            trial=np.asarray(payload["trial"], dtype=np.int64),
        )


@dataclass(frozen=True)
class Splits:
    dataset: str
    seed: int
    pretrain_sessions: list[str]
    heldout_sessions: list[str]
    windows: dict[str, Windows]
    neurons: dict[str, dict[str, dict[str, list[str]]]]
    predictability: dict[str, dict[str, Any]]

    def neuron_group(self, modality: str, session: str, group: str) -> list[str]:
        """Neuron ids of one group: held_in, held_out, predictable or unpredictable."""
        try:
            return self.neurons[modality][session][group]
        except KeyError as err:
            raise KeyError(
                f"splits of {self.dataset!r} have no neuron group {group!r} for "
                f"modality {modality!r}, session {session!r}"
            ) from err

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "seed": self.seed,
            "sessions": {"pretrain": self.pretrain_sessions, "heldout": self.heldout_sessions},
            "windows": {s: w.to_json() for s, w in self.windows.items()},
            "neurons": self.neurons,
            "predictability": self.predictability,
        }


def write_splits(splits: Splits, path: str | Path) -> None:
    write_json(path, splits.to_json())


def read_splits(path: str | Path) -> Splits:
    path = Path(path)
    payload = json.loads(path.read_text())
    try:
        return Splits(
            dataset=payload["dataset"],
            seed=int(payload["seed"]),
            pretrain_sessions=list(payload["sessions"]["pretrain"]),
            heldout_sessions=list(payload["sessions"]["heldout"]),
            windows={s: Windows.from_json(w) for s, w in payload["windows"].items()},
            neurons=payload["neurons"],
            predictability=payload["predictability"],
        )
    except KeyError as err:
        raise ValueError(f"{path}: splits file lacks key {err}") from err
