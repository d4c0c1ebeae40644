"""WindowDataset / collate / WindowLoader: lazy reads equal direct slicing, determinism."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurossl.data.loader import DatasetVocab, WindowDataset, collate_windows, make_loader
from neurossl.data.session import Session, read_session, write_session
from neurossl.data.splits import Splits, Windows

BIN = 0.02
TRIAL_BINS = 20
REGIONS = ("CA1", "LP", "VISp")


def make_dataset(
    root: Path,
    n_sessions: int = 4,
    n_neurons: int = 18,
    n_trials: int = 30,
    seed: int = 0,
    trial_bins: int = TRIAL_BINS,
) -> tuple[dict[str, Path], Splits]:
    """Tiny spiking sessions (latent-driven Poisson counts, 3 regions, trials, behaviour).

    Sessions differ in neuron count so padding and per-session stitchers are exercised;
    the first half pretrains, the rest are held out. ``trial_bins`` sets the window length
    (benchmarks use MtM's 100 bins).
    """
    rng = np.random.default_rng(seed)
    paths, windows, neurons = {}, {}, {}
    gap = trial_bins + 5
    for s in range(n_sessions):
        session = f"sub-{s:02d}_ses-01"
        n = n_neurons + 2 * s
        t = n_trials * gap + 5
        label = rng.integers(0, 2, n_trials)
        latent = np.zeros((t, 2))
        for k in range(n_trials):
            phase = np.linspace(0, np.pi, trial_bins)
            latent[k * gap : k * gap + trial_bins, 0] = np.sin(phase) * (2 * label[k] - 1)
            latent[k * gap : k * gap + trial_bins, 1] = np.cos(phase)
        weights = rng.normal(0, 0.8, (2, n))
        rates = np.exp(np.log(0.3) + latent @ weights)
        activity = rng.poisson(rates).astype(np.float32)
        regions = np.array([REGIONS[i % len(REGIONS)] for i in range(n)])
        table = pd.DataFrame(
            {
                "id": [f"u{i}" for i in range(n)],
                "region": regions,
                "depth": np.arange(n, dtype=float),
                "cre_line": ["none"] * n,
            }
        )
        starts = np.arange(n_trials) * gap * BIN
        trials = pd.DataFrame(
            {
                "start": starts,
                "stop": starts + trial_bins * BIN,
                "align": starts,
                "choice": 2 * label - 1,
                "stimulus_class": label,
            }
        )
        behavior = (latent[:, :1] + 0.1 * rng.normal(size=(t, 1))).astype(np.float32)
        meta = dict.fromkeys(
            ("dataset", "session", "subject", "source_path", "source_sha256", "software_version"),
            "test",
        )
        path = root / f"{session}.spikes.h5"
        write_session(
            Session(
                activity, "spikes", BIN, 0.0, table, trials, behavior, ["wheel_speed"], meta,
                truth={"rates": rates.astype(np.float32)},
            ),
            path,
        )  # fmt: skip
        paths[session] = path
        split = np.array(["train"] * n_trials, dtype=object)
        order = rng.permutation(n_trials)
        split[order[: n_trials // 10]] = "valid"
        split[order[n_trials // 10 : n_trials // 10 + n_trials // 5]] = "test"
        windows[session] = Windows(
            starts, starts + trial_bins * BIN, split, np.arange(n_trials, dtype=np.int64)
        )
        held_out = [f"u{i}" for i in range(0, n, 4)]
        neurons[session] = {
            "held_in": [f"u{i}" for i in range(n) if f"u{i}" not in held_out],
            "held_out": held_out,
            "predictable": [f"u{i}" for i in range(n // 2)],
            "unpredictable": [f"u{i}" for i in range(n // 2, n)],
        }
    ids = sorted(paths)
    half = n_sessions // 2
    splits = Splits("toy", 0, ids[:half], ids[half:], windows, {"spikes": neurons}, {})
    return paths, splits


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Splits]:
    return make_dataset(tmp_path_factory.mktemp("loader"))


def test_items_equal_direct_slicing(data):
    paths, splits = data
    session = sorted(paths)[1]
    ds = WindowDataset(paths, splits, "train", [session])
    full = read_session(paths[session])
    win = splits.windows[session].select("train")
    assert len(ds) == len(win)
    for i in (0, len(ds) - 1):
        item = ds[i]
        first = int(np.rint(win.start[i] / BIN))
        np.testing.assert_array_equal(item["activity"], full.activity[first : first + TRIAL_BINS])
        np.testing.assert_array_equal(item["behavior"], full.behavior[first : first + TRIAL_BINS])
        np.testing.assert_array_equal(
            item["rates"], full.truth["rates"][first : first + TRIAL_BINS]
        )
        assert item["label/choice"] == full.trials["choice"][win.trial[i]]
        np.testing.assert_allclose(item["time"], np.arange(TRIAL_BINS) * BIN, rtol=1e-6)


def test_neuron_subset_and_vocab(data):
    paths, splits = data
    session = sorted(paths)[0]
    subset = ["u5", "u1", "u3"]
    ds = WindowDataset(paths, splits, "test", [session], neuron_ids={session: subset})
    full = read_session(paths[session])
    item = ds[0]
    first = int(np.rint(splits.windows[session].select("test").start[0] / BIN))
    np.testing.assert_array_equal(
        item["activity"], full.activity[first : first + TRIAL_BINS][:, [5, 1, 3]]
    )
    vocab = DatasetVocab.from_paths(paths)
    assert [vocab.unit_ids[u] for u in item["unit"]] == [f"{session}/{n}" for n in subset]
    assert vocab.region_names == REGIONS
    with pytest.raises(KeyError, match="u999"):
        WindowDataset(paths, splits, "test", [session], neuron_ids={session: ["u999"]})


def test_collate_pads_neurons(data):
    paths, splits = data
    sessions = sorted(paths)[:2]
    ds = WindowDataset(paths, splits, "train", sessions)
    by_session = ds.indices_by_session()
    batch = collate_windows([ds[by_session[sessions[0]][0]], ds[by_session[sessions[1]][0]]])
    n0, n1 = 18, 20
    assert batch["activity"].shape == (2, TRIAL_BINS, n1)
    assert batch["neuron_mask"].sum(1).tolist() == [n0, n1]
    assert (batch["activity"][0, :, n0:] == 0).all()
    assert batch["session"].tolist() == [0, 1]
    assert batch["label/choice"].dtype == torch.float32
    assert set(batch["label/choice"].tolist()) <= {-1.0, 1.0}


def test_windows_without_a_trial_have_nan_labels_not_minus_one(data):
    """-1 is a real choice; a continuous window's missing label must not look like one."""
    from dataclasses import replace

    from neurossl.data.splits import Windows

    paths, splits = data
    session = sorted(paths)[0]
    w = splits.windows[session]
    continuous = Windows(w.start, w.stop, w.split, np.full(len(w), -1, dtype=np.int64))
    ds = WindowDataset(
        paths, replace(splits, windows={**splits.windows, session: continuous}), "train", [session]
    )
    batch = collate_windows([ds[0], ds[1]])
    assert torch.isnan(batch["label/choice"]).all()


def test_dataset_holds_no_activity(data):
    paths, splits = data
    ds = WindowDataset(paths, splits, "train", sorted(paths))
    ds[0]  # opens a file handle, which must not travel with the object
    blob = pickle.dumps(ds)
    one_session_bytes = read_session(paths[sorted(paths)[0]]).activity.nbytes
    assert len(blob) < one_session_bytes / 2
    arrays = [v for m in ds._meta.values() for v in vars(m).values() if isinstance(v, np.ndarray)]
    assert all(a.ndim == 1 for a in arrays)


def test_loader_is_deterministic_and_resumable(data):
    paths, splits = data
    ds = WindowDataset(paths, splits, "train", sorted(paths))
    loader = make_loader(ds, batch_size=5, shuffle=True, seed=3, by_session=True)
    per_epoch = len(loader)
    stream = loader.iter_from(0)
    first = [next(stream) for _ in range(per_epoch + 3)]
    for batch in first:
        assert (batch["session"] == batch["session"][0]).all()
    resumed = loader.iter_from(per_epoch + 1)
    for expected in first[per_epoch + 1 :]:
        torch.testing.assert_close(next(resumed)["activity"], expected["activity"])
    seen = np.concatenate([b.tolist() for b in loader.epoch_batches(0)])
    assert sorted(seen) == list(range(len(ds)))
    assert loader.epoch_batches(0)[0].tolist() != loader.epoch_batches(1)[0].tolist()


def test_ranks_share_a_global_batch(data):
    paths, splits = data
    ds = WindowDataset(paths, splits, "train", sorted(paths))
    loader = make_loader(ds, batch_size=4, shuffle=True, seed=0, by_session=True)
    full = next(loader.iter_from(2))["activity"]
    parts = [next(loader.iter_from(2, rank=r, world_size=2))["activity"] for r in range(2)]
    torch.testing.assert_close(full[0::2], parts[0])
    torch.testing.assert_close(full[1::2], parts[1])
