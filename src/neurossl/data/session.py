"""The Session contract: one recording of one modality on one regular time base.

Every source (synthetic, DANDI, IBL, Allen, local NWB) is reduced to this one shape,
so methods never see source-specific layouts. On disk a Session is one HDF5 file:

- ``/activity`` float32 [T, N]; attributes ``modality``, ``bin_size``, ``t0``.
- ``/neurons/<column>`` one 1-D dataset per column; required columns ``id``, ``region``,
  ``depth``, ``cre_line``. Per-neuron statistics are added by the split step.
- ``/trials/<column>``; required columns ``start``, ``stop``, ``align`` (may be empty).
- ``/behavior`` float32 [T, B] with attribute ``names``; NaN where missing.
- ``/meta`` attributes: dataset, session, subject, source_path, source_sha256,
  software_version.
- ``/truth/<name>`` optional ground truth (synthetic data only): ``rates`` (spikes per
  bin) or ``signal`` (noise-free dF/F) [T, N], ``latents`` [T, K], ``predictable`` [N].

Tables keep their column order in an attribute so a round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from neurossl.atomic import atomic_path
from neurossl.names import MODALITIES

FORMAT_VERSION = 1
NEURON_COLUMNS = ("id", "region", "depth", "cre_line")
TRIAL_COLUMNS = ("start", "stop", "align")
META_KEYS = ("dataset", "session", "subject", "source_path", "source_sha256", "software_version")
TRUTH_KEYS = ("rates", "signal", "latents", "predictable")
#: Elements summed per block by ``all_finite`` (1 MB of float64, inside L2).
_FINITE_BLOCK = 1 << 17


class SessionError(ValueError):
    """A Session file or object that breaks the contract; the message names where."""


@dataclass
class Session:
    activity: np.ndarray
    modality: str
    bin_size: float
    t0: float
    neurons: pd.DataFrame
    trials: pd.DataFrame
    behavior: np.ndarray
    behavior_names: list[str]
    meta: dict[str, str]
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_bins(self) -> int:
        return int(self.activity.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.activity.shape[1])

    @property
    def times(self) -> np.ndarray:
        """Left edge of every bin (seconds)."""
        return self.t0 + np.arange(self.n_bins) * self.bin_size

    def bin_index(self, time: float | np.ndarray) -> np.ndarray:
        """Index of the bin whose left edge is nearest ``time``."""
        return np.rint((np.asarray(time) - self.t0) / self.bin_size).astype(np.int64)

    def validate(self, where: str = "session") -> None:
        """Raise SessionError naming the field that breaks the contract."""
        act = self.activity
        if act.ndim != 2 or act.dtype != np.float32:
            raise SessionError(
                f"{where}: 'activity' must be float32 [T, N], got {act.dtype} {act.shape}"
            )
        if act.shape[0] == 0 or act.shape[1] == 0:
            raise SessionError(f"{where}: 'activity' is empty {act.shape}")
        if not all_finite(act):
            raise SessionError(f"{where}: 'activity' contains NaN or inf")
        if self.modality not in MODALITIES:
            raise SessionError(
                f"{where}: 'modality' is {self.modality!r}, expected one of {MODALITIES}"
            )
        if not (np.isfinite(self.bin_size) and self.bin_size > 0):
            raise SessionError(f"{where}: 'bin_size' must be > 0 seconds, got {self.bin_size}")
        _require_columns(self.neurons, NEURON_COLUMNS, f"{where}: neurons")
        if len(self.neurons) != act.shape[1]:
            raise SessionError(
                f"{where}: neurons table has {len(self.neurons)} rows but activity has "
                f"{act.shape[1]} neurons"
            )
        if self.neurons["id"].duplicated().any():
            raise SessionError(f"{where}: neurons 'id' has duplicates")
        _require_columns(self.trials, TRIAL_COLUMNS, f"{where}: trials")
        if len(self.trials) and (self.trials["stop"] < self.trials["start"]).any():
            raise SessionError(f"{where}: trials with 'stop' before 'start'")
        if self.behavior.shape != (act.shape[0], len(self.behavior_names)):
            raise SessionError(
                f"{where}: 'behavior' must be [T={act.shape[0]}, B={len(self.behavior_names)}], "
                f"got {self.behavior.shape}"
            )
        missing = [k for k in META_KEYS if k not in self.meta]
        if missing:
            raise SessionError(f"{where}: meta lacks {missing}")
        for key, value in self.truth.items():
            if key not in TRUTH_KEYS:
                raise SessionError(f"{where}: unknown truth key {key!r}; expected {TRUTH_KEYS}")
            if key in ("rates", "signal") and value.shape != act.shape:
                raise SessionError(
                    f"{where}: truth {key!r} shape {value.shape} != activity {act.shape}"
                )
            if key == "latents" and value.shape[0] != act.shape[0]:
                raise SessionError(
                    f"{where}: truth 'latents' has {value.shape[0]} rows, expected {act.shape[0]}"
                )
            if key == "predictable" and value.shape != (act.shape[1],):
                raise SessionError(f"{where}: truth 'predictable' must be [N={act.shape[1]}]")


def all_finite(values: np.ndarray) -> bool:
    """Whether no element is NaN or +-inf, in one read-only pass of cache-sized blocks.

    ``np.isfinite(a).all()`` writes a boolean array as large as ``a`` and reads it back
    (~70 ms for a 276 MB grid). A float sum is NaN or infinite whenever any term is NaN
    or infinite (inf - inf is NaN), so a finite block sum proves the block finite; only a
    non-finite sum, which a finite block can also reach by overflowing, is checked
    element by element. The answer is exact either way.
    """
    flat = values.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow and inf - inf are expected
        for first in range(0, flat.size, _FINITE_BLOCK):
            block = flat[first : first + _FINITE_BLOCK]
            if not np.isfinite(block.sum()) and not np.isfinite(block).all():
                return False
    return True


def write_session(session: Session, path: str | Path) -> None:
    """Validate and write atomically; a failure leaves no file at ``path``."""
    session.validate(where=str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        act = f.create_dataset(
            "activity", data=session.activity, chunks=_row_chunks(session.activity)
        )
        act.attrs["modality"] = session.modality
        act.attrs["bin_size"] = float(session.bin_size)
        act.attrs["t0"] = float(session.t0)
        _write_table(f.create_group("neurons"), session.neurons)
        _write_table(f.create_group("trials"), session.trials)
        beh = f.create_dataset("behavior", data=session.behavior.astype(np.float32))
        beh.attrs["names"] = np.array(session.behavior_names, dtype=h5py.string_dtype())
        meta = f.create_group("meta")
        for key, value in session.meta.items():
            meta.attrs[key] = str(value)
        truth = f.create_group("truth")
        for key, value in session.truth.items():
            truth.create_dataset(key, data=value)


def read_session(path: str | Path) -> Session:
    """Read a whole Session into memory and validate it."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            act = f["activity"]
            session = Session(
                activity=act[()],
                modality=str(act.attrs["modality"]),
                bin_size=float(act.attrs["bin_size"]),
                t0=float(act.attrs["t0"]),
                neurons=_read_table(f["neurons"]),
                trials=_read_table(f["trials"]),
                behavior=f["behavior"][()],
                behavior_names=[_text(n) for n in f["behavior"].attrs["names"]],
                meta={k: _text(v) for k, v in f["meta"].attrs.items()},
                truth={k: v[()] for k, v in f["truth"].items()},
            )
    except (KeyError, OSError) as err:
        raise SessionError(f"{path}: not a readable Session file ({err})") from err
    session.validate(where=str(path))
    return session


def read_neurons(path: str | Path) -> pd.DataFrame:
    """Only the neuron table: cheap, for planning without loading activity."""
    with h5py.File(path, "r") as f:
        return _read_table(f["neurons"])


def _row_chunks(array: np.ndarray) -> tuple[int, int]:
    """Chunks of whole rows so reading a time window touches few chunks."""
    rows = max(1, min(array.shape[0], (1 << 18) // max(1, array.shape[1])))
    return (rows, array.shape[1])


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SessionError(f"{where} lacks column(s) {missing}")


def _write_table(group: h5py.Group, table: pd.DataFrame) -> None:
    group.attrs["columns"] = np.array(list(table.columns), dtype=h5py.string_dtype())
    for column in table.columns:
        values = table[column].to_numpy()
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            group.create_dataset(
                column, data=np.array([str(v) for v in values], dtype=h5py.string_dtype())
            )
        else:
            group.create_dataset(column, data=values)


def _read_table(group: h5py.Group) -> pd.DataFrame:
    columns = [_text(c) for c in group.attrs["columns"]]
    data = {}
    for column in columns:
        values = group[column][()]
        if values.dtype.kind in ("O", "S"):
            values = np.array([_text(v) for v in values], dtype=object)
        data[column] = values
    return pd.DataFrame(data, columns=columns)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
