"""Windows of Session HDF5 files -> batches (docs/batch_format.md).

Why it is built this way:

- *Lazy*: a :class:`WindowDataset` keeps only per-session metadata (time base, neuron
  table, trial labels, window bounds) and opens each HDF5 file on first use in the
  process that reads it, so DataLoader workers get their own handles and memory does not
  grow with the number of sessions or recording length. Each item reads only its
  window's rows. Items already read are kept up to a fixed byte budget
  (:data:`ITEM_CACHE_BYTES` per process): small datasets are then read from disk once
  instead of once per epoch (HDF5 item reads were a third of a tiny model's CPU step),
  while large ones still stream with bounded memory.
- *Exactly resumable*: the batches of a training run are a pure function of
  ``(seed, epoch, position in epoch)`` (:class:`WindowLoader`). The engine asks for the
  batches from global step ``k`` on, so a job killed after step ``k`` and rerun sees
  the same batches an uninterrupted run would have seen, with no loader state to save.
- *Shardable*: ``iter_from(step, rank, world_size)`` gives each DDP rank a disjoint
  slice of the same global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neurossl.data.session import TRIAL_COLUMNS, read_neurons
from neurossl.data.splits import Splits

Item = dict[str, Any]
Batch = dict[str, torch.Tensor]

#: Per-process budget for items kept in memory after their first read.
ITEM_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class DatasetVocab:
    """Integer ids shared by every batch of a dataset, so embeddings line up across stages.

    Built from *all* sessions of the dataset (not the subset one stage trains on): the
    pretraining and fine-tuning stages then agree on what index ``k`` means.
    """

    session_ids: tuple[str, ...]
    unit_ids: tuple[str, ...]
    region_names: tuple[str, ...]

    @property
    def session_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.session_ids)}

    @property
    def unit_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.unit_ids)}

    @property
    def region_index(self) -> dict[str, int]:
        return {r: i for i, r in enumerate(self.region_names)}

    @classmethod
    def from_paths(cls, session_paths: dict[str, Path]) -> DatasetVocab:
        units: list[str] = []
        regions: set[str] = set()
        for session in sorted(session_paths):
            neurons = read_neurons(session_paths[session])
            units.extend(f"{session}/{n}" for n in sorted(str(i) for i in neurons["id"]))
            regions.update(str(r) for r in neurons["region"])
        return cls(tuple(sorted(session_paths)), tuple(units), tuple(sorted(regions)))


@dataclass(frozen=True)
class _SessionMeta:
    """What an item needs from one session besides the activity rows (all small)."""

    path: Path
    t0: float
    bin_size: float
    n_bins: int
    columns: np.ndarray  # neuron columns to read, in output order
    unit: np.ndarray  # int64 [N] vocabulary ids
    region: np.ndarray  # int64 [N]
    behavior_names: tuple[str, ...]
    labels: dict[str, np.ndarray]  # per trial row
    truth_keys: tuple[str, ...]


class WindowDataset(Dataset):
    """The windows of one split of some sessions; item ``i`` is one window (no batch axis)."""

    def __init__(
        self,
        session_paths: dict[str, Path],
        splits: Splits,
        split: str,
        sessions: Sequence[str],
        neuron_ids: dict[str, Sequence[str]] | None = None,
    ) -> None:
        self.vocab = DatasetVocab.from_paths(session_paths)
        self.split = split
        self.sessions = tuple(sessions)
        self._meta: dict[str, _SessionMeta] = {}
        index: list[tuple[str, int, int, int]] = []  # session, first bin, n bins, trial
        for session in self.sessions:
            if session not in session_paths:
                raise KeyError(f"session {session!r} has no Session file in session_paths")
            if session not in splits.windows:
                raise KeyError(f"splits of {splits.dataset!r} have no windows for {session!r}")
            subset = None if neuron_ids is None else neuron_ids.get(session)
            meta = self._read_meta(session, Path(session_paths[session]), subset)
            self._meta[session] = meta
            windows = splits.windows[session].select(split)
            for start, stop, trial in zip(windows.start, windows.stop, windows.trial, strict=True):
                first = int(np.rint((start - meta.t0) / meta.bin_size))
                length = int(np.rint((stop - start) / meta.bin_size))
                if first < 0 or first + length > meta.n_bins or length <= 0:
                    raise ValueError(
                        f"{meta.path}: window [{start}, {stop}) s maps to bins "
                        f"[{first}, {first + length}) outside the recording's {meta.n_bins} bins"
                    )
                index.append((session, first, length, int(trial)))
        self._index = index
        self._files: dict[str, h5py.File] = {}
        self._pid = os.getpid()
        self._cache: dict[int, Item] = {}
        self._cache_bytes = 0

    def _read_meta(self, session: str, path: Path, subset: Sequence[str] | None) -> _SessionMeta:
        with h5py.File(path, "r") as f:
            act = f["activity"]
            n_bins = int(act.shape[0])
            t0, bin_size = float(act.attrs["t0"]), float(act.attrs["bin_size"])
            behavior_names = tuple(
                n.decode() if isinstance(n, bytes) else str(n) for n in f["behavior"].attrs["names"]
            )
            truth_keys = tuple(k for k in ("rates", "signal") if k in f.get("truth", {}))
            labels = {}
            trials = f["trials"]
            for column in trials:
                values = trials[column][()]
                if column in TRIAL_COLUMNS or values.dtype.kind not in "iubf":
                    continue
                labels[column] = values
        neurons = read_neurons(path)
        ids = [str(i) for i in neurons["id"]]
        position = {n: i for i, n in enumerate(ids)}
        if subset is None:
            columns = np.arange(len(ids))
        else:
            missing = [n for n in subset if str(n) not in position]
            if missing:
                raise KeyError(f"{path}: neuron ids {missing[:5]} are not in the neurons table")
            columns = np.array([position[str(n)] for n in subset], dtype=np.int64)
        unit_index = self.vocab.unit_index
        region_index = self.vocab.region_index
        unit = np.array([unit_index[f"{session}/{ids[c]}"] for c in columns], dtype=np.int64)
        region = np.array(
            [region_index[str(neurons["region"][c])] for c in columns], dtype=np.int64
        )
        return _SessionMeta(
            path, t0, bin_size, n_bins, columns, unit, region, behavior_names, labels, truth_keys
        )

    def __len__(self) -> int:
        return len(self._index)

    def session_of(self, i: int) -> str:
        return self._index[i][0]

    def indices_by_session(self) -> dict[str, np.ndarray]:
        """Item indices of each session, in window order (for single-session batches)."""
        out: dict[str, list[int]] = {s: [] for s in self.sessions}
        for i, (session, *_rest) in enumerate(self._index):
            out[session].append(i)
        return {s: np.asarray(v, dtype=np.int64) for s, v in out.items()}

    def regions(self, session: str) -> np.ndarray:
        """Region vocabulary index of each (selected) neuron of a session."""
        return self._meta[session].region

    def behavior_names(self, session: str) -> tuple[str, ...]:
        return self._meta[session].behavior_names

    def _file(self, session: str) -> h5py.File:
        # A forked worker inherits the parent's handles, which h5py cannot share safely.
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if session not in self._files:
            self._files[session] = h5py.File(self._meta[session].path, "r")
        return self._files[session]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_cache"], state["_cache_bytes"] = {}, 0
        return state

    def __getitem__(self, i: int) -> Item:
        cached = self._cache.get(i)
        if cached is not None:
            return dict(cached)  # a fresh dict, so callers may add or replace keys
        item = self._read_item(i)
        size = sum(v.nbytes for v in item.values() if isinstance(v, np.ndarray))
        if self._cache_bytes + size <= ITEM_CACHE_BYTES:
            for value in item.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False  # shared by every later read of item i
            self._cache[i] = item
            self._cache_bytes += size
        return dict(item)

    def _read_item(self, i: int) -> Item:
        session, first, length, trial = self._index[i]
        meta = self._meta[session]
        f = self._file(session)
        rows = slice(first, first + length)
        item: Item = {
            "activity": _columns(f["activity"][rows], meta.columns),
            "session": self.vocab.session_index[session],
            "unit": meta.unit,
            "region": meta.region,
            "time": (np.arange(length) * meta.bin_size).astype(np.float32),
            "behavior": f["behavior"][rows].astype(np.float32),
        }
        for name, values in meta.labels.items():
            # Always float with NaN for "no label": -1 is a real class (IBL choice).
            inside = 0 <= trial < values.shape[0]
            item[f"label/{name}"] = float(values[trial]) if inside else np.nan
        for key in meta.truth_keys:
            item[key] = _columns(f["truth"][key][rows], meta.columns)
        return item


def _columns(block: np.ndarray, columns: np.ndarray) -> np.ndarray:
    if columns.size == block.shape[1] and (columns == np.arange(block.shape[1])).all():
        return block.astype(np.float32)
    return block[:, columns].astype(np.float32)


def collate_windows(items: Sequence[Item]) -> Batch:
    """Stack items into a batch, padding neurons (sessions differ in N) with zeros."""
    if not items:
        raise ValueError("collate_windows got no items")
    lengths = {it["activity"].shape[0] for it in items}
    if len(lengths) != 1:
        raise ValueError(f"windows of one batch must have the same number of bins, got {lengths}")
    n_max = max(it["activity"].shape[1] for it in items)
    b, t = len(items), lengths.pop()
    activity = np.zeros((b, t, n_max), dtype=np.float32)
    mask = np.zeros((b, n_max), dtype=bool)
    unit = np.zeros((b, n_max), dtype=np.int64)
    region = np.zeros((b, n_max), dtype=np.int64)
    n_behavior = {it["behavior"].shape[1] for it in items}
    if len(n_behavior) != 1:
        raise ValueError(f"windows of one batch differ in behaviour variables: {n_behavior}")
    truth = {k: np.zeros((b, t, n_max), np.float32) for k in ("rates", "signal") if k in items[0]}
    for j, it in enumerate(items):
        n = it["activity"].shape[1]
        activity[j, :, :n] = it["activity"]
        mask[j, :n] = True
        unit[j, :n] = it["unit"]
        region[j, :n] = it["region"]
        for key, array in truth.items():
            array[j, :, :n] = it[key]
    batch: Batch = {
        "activity": torch.from_numpy(activity),
        "neuron_mask": torch.from_numpy(mask),
        "session": torch.tensor([it["session"] for it in items], dtype=torch.int64),
        "unit": torch.from_numpy(unit),
        "region": torch.from_numpy(region),
        "time": torch.from_numpy(np.stack([it["time"] for it in items])),
        "behavior": torch.from_numpy(np.stack([it["behavior"] for it in items])),
    }
    for key, array in truth.items():
        batch[key] = torch.from_numpy(array)
    label_keys = sorted({k for it in items for k in it if k.startswith("label/")})
    for key in label_keys:
        values = [it.get(key) for it in items]
        filled = [np.nan if v is None else float(v) for v in values]
        batch[key] = torch.tensor(filled, dtype=torch.float32)
    return batch


class WindowLoader:
    """Batches of a :class:`WindowDataset` as a pure function of (seed, epoch, position).

    Iterating yields one epoch; training code calls :meth:`iter_from` to get an endless
    stream of global steps starting anywhere, which is what makes resumption exact.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        by_session: bool,
        num_workers: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(dataset) == 0:
            raise ValueError(f"no {dataset.split!r} windows in sessions {dataset.sessions}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.by_session = by_session
        self.num_workers = num_workers

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The item indices of every batch of an epoch, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.by_session:
            batches = []
            for indices in self.dataset.indices_by_session().values():
                order = rng.permutation(indices) if self.shuffle else indices
                batches.extend(_chunks(order, self.batch_size))
            if self.shuffle:
                batches = [batches[i] for i in rng.permutation(len(batches))]
            return batches
        order = np.arange(len(self.dataset))
        if self.shuffle:
            order = rng.permutation(order)
        return _chunks(order, self.batch_size)

    def __len__(self) -> int:
        return len(self.epoch_batches(0))

    def _loader(self, plan: Iterator[list[int]]) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=plan,
            collate_fn=collate_windows,
            num_workers=self.num_workers,
            # A private generator: building an iterator must not draw from the global RNG,
            # or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False,
        )

    def __iter__(self) -> Iterator[Batch]:
        plan = [b.tolist() for b in self.epoch_batches(0)]
        return iter(self._loader(_Plan(plan)))

    def iter_from(self, step: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Endless batches for global steps ``step, step + 1, ...`` (this rank's share)."""
        return iter(self._loader(_StepPlan(self, step, rank, world_size)))


class _Plan:
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _StepPlan:
    """Global step -> (epoch, position) -> this rank's slice of that batch.

    With several ranks, remainder batches smaller than the world size are left out; their
    number is the same every epoch (shuffling permutes windows, not chunk sizes), so the
    step -> batch map stays a pure function.
    """

    def __init__(self, loader: WindowLoader, step: int, rank: int, world_size: int) -> None:
        self.per_epoch = len(self._eligible(loader, 0, world_size))
        if self.per_epoch == 0:
            raise ValueError(
                f"no batch holds {world_size} windows, one per rank; raise batch_size "
                "or use fewer processes"
            )
        self.loader, self.step, self.rank, self.world_size = loader, step, rank, world_size

    @staticmethod
    def _eligible(loader: WindowLoader, epoch: int, world_size: int) -> list[np.ndarray]:
        return [b for b in loader.epoch_batches(epoch) if b.size >= world_size]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, position = divmod(self.step, self.per_epoch)
        while True:
            for batch in self._eligible(self.loader, epoch, self.world_size)[position:]:
                yield batch[self.rank :: self.world_size].tolist()
            epoch, position = epoch + 1, 0


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, order.size, size)]


def make_loader(
    dataset: WindowDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    by_session: bool,
    num_workers: int = 0,
) -> WindowLoader:
    """A deterministic, resumable loader; ``by_session`` yields single-session batches."""
    return WindowLoader(dataset, batch_size, shuffle, seed, by_session, num_workers)
