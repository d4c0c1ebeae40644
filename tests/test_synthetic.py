"""The synthetic source: config, determinism, planted structure and NWB best practice."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from nwbinspector import Importance, inspect_nwbfile
from scipy.stats import kurtosis, skew

from neurossl.data.sources import synthetic_model as model
from neurossl.data.sources.synthetic import (
    PREDICTABLE_CRE_LINES,
    UNPREDICTABLE_CRE_LINES,
    SyntheticConfig,
    session_ids,
    write_session_nwb,
)

#: Shorter than the default so the suite stays fast; long enough for stable statistics.
CONFIG = SyntheticConfig(n_trials=40)
SESSION = "sub-01_ses-01"


@pytest.fixture(scope="module")
def nwb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / f"{SESSION}.nwb"
    write_session_nwb(CONFIG, SESSION, path)
    return path


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every numeric dataset of a file (bytes-level content of the data arrays)."""
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf":
                found[name] = item[()]

        f.visititems(visit)
    return found


def assert_same_arrays(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> None:
    assert reference.keys() == other.keys()
    for name, values in reference.items():
        np.testing.assert_array_equal(values, other[name], err_msg=name)


def test_session_ids_span_at_least_two_subjects():
    ids = session_ids(SyntheticConfig())
    assert ids == [f"sub-0{s}_ses-0{k}" for s in (1, 2, 3) for k in (1, 2)]
    with pytest.raises(ValueError, match="n_subjects"):
        SyntheticConfig(n_subjects=1)


def test_from_dict_accepts_yaml_lists_and_rejects_unknown_keys():
    config = SyntheticConfig.from_dict({"seed": 3, "regions": ["VISp", "CA1"]})
    assert config.regions == ("VISp", "CA1") and config.seed == 3
    with pytest.raises(ValueError, match="n_neurons"):
        SyntheticConfig.from_dict({"n_neurons": 5})


def test_unknown_session_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="sub-09_ses-01"):
        write_session_nwb(CONFIG, "sub-09_ses-01", tmp_path / "x.nwb")
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_arrays_other_seed_or_session_differs(nwb_path: Path, tmp_path: Path):
    again, other_seed, other_session = (tmp_path / n for n in ("a.nwb", "b.nwb", "c.nwb"))
    write_session_nwb(CONFIG, SESSION, again)
    write_session_nwb(SyntheticConfig(n_trials=40, seed=1), SESSION, other_seed)
    write_session_nwb(CONFIG, "sub-02_ses-01", other_session)
    reference = datasets(nwb_path)
    assert_same_arrays(reference, datasets(again))
    spikes = "units/spike_times"
    for path in (other_seed, other_session):
        assert not np.array_equal(datasets(path)[spikes][:1000], reference[spikes][:1000])


def test_more_trials_for_one_subject_leave_the_others_bit_identical(nwb_path: Path, tmp_path):
    """``n_trials_by_subject`` lengthens one animal's recordings; every other session is
    the file it was without the override, so its pretraining data does not move."""
    longer = SyntheticConfig(n_trials=40, n_trials_by_subject={"sub-02": 60})
    same, long = tmp_path / "same.nwb", tmp_path / "long.nwb"
    write_session_nwb(longer, SESSION, same)
    write_session_nwb(longer, "sub-02_ses-01", long)
    assert_same_arrays(datasets(nwb_path), datasets(same))
    with h5py.File(long, "r") as f:
        assert f["intervals/trials/start_time"].shape == (60,)
        assert f["intervals/trials/stop_time"][-1] <= longer.duration_of("sub-02_ses-01")
    with pytest.raises(ValueError, match=r"n_trials_by_subject.*sub-09"):
        SyntheticConfig(n_trials_by_subject={"sub-09": 10})
    with pytest.raises(ValueError, match="n_trials_by_subject"):
        SyntheticConfig(n_trials_by_subject={"sub-01": 0})


def test_nwbinspector_finds_no_violation(nwb_path: Path):
    serious = {
        Importance.ERROR,
        Importance.PYNWB_VALIDATION,
        Importance.CRITICAL,
        Importance.BEST_PRACTICE_VIOLATION,
    }
    messages = [m for m in inspect_nwbfile(nwbfile_path=nwb_path) if m.importance in serious]
    assert messages == []


def test_known_predictable_proportion_and_cre_lines(nwb_path: Path):
    with h5py.File(nwb_path, "r") as f:
        units = f["units/predictable"][()]
        segmentation = f["processing/ophys/ImageSegmentation/PlaneSegmentation"]
        rois = segmentation["predictable"][()]
        cre = np.array([c.decode() for c in segmentation["cre_line"][()]])
    assert units.sum() == round(0.6 * CONFIG.n_units)
    assert rois.sum() == round(0.6 * CONFIG.n_rois)
    assert set(cre[rois]) <= set(PREDICTABLE_CRE_LINES)
    assert set(cre[~rois]) <= set(UNPREDICTABLE_CRE_LINES)


def test_predictable_rois_have_near_gaussian_traces(nwb_path: Path):
    with h5py.File(nwb_path, "r") as f:
        traces = f["processing/ophys/DfOverF/RoiResponseSeries/data"][()]
        predictable = f["processing/ophys/ImageSegmentation/PlaneSegmentation/predictable"][()]
    s, k = skew(traces, axis=0), kurtosis(traces, axis=0)
    assert np.median(s[predictable]) < 1.0 and np.median(k[predictable]) < 2.0
    assert np.median(s[~predictable]) > 2.5 and np.median(k[~predictable]) > 8.0
    # A single threshold on each score recovers the planted group almost perfectly.
    for score, threshold in ((s, 2.0), (k, 6.0)):
        called = score <= threshold
        assert (called == predictable).mean() >= 0.95


def test_trials_and_regions_are_as_configured(nwb_path: Path):
    with h5py.File(nwb_path, "r") as f:
        trials = f["intervals/trials"]
        start, onset = trials["start_time"][()], trials["stim_on_time"][()]
        classes, choice = trials["stimulus_class"][()], trials["choice"][()]
        locations = {x.decode() for x in f["general/extracellular_ephys/electrodes/location"][()]}
        subject = f["general/subject/subject_id"][()].decode()
    assert start.size == CONFIG.n_trials
    np.testing.assert_allclose(onset - start, 0.5)
    assert set(classes) <= set(range(CONFIG.n_stimulus_classes)) and len(set(classes)) > 1
    assert set(choice) == {-1, 1}
    assert locations == set(CONFIG.regions)
    assert subject == "sub-01"


def _population(**overrides) -> tuple[np.ndarray, model.Population]:
    world = model.make_world(0, 4, 4)
    trials = model.make_trials(model.session_rng(0, "s", 0), 60, 2.0, 0.5, 4)
    t = model.fine_times(60 * 2.5 + 0.5)
    latents = model.make_latents(world, trials, model.session_rng(0, "s", 1), t)
    kwargs = {"n": 24, "predictable_fraction": 0.5, "base_rate": 8.0, "modulation": 0.7}
    population = model.make_population(
        world, trials, latents, model.session_rng(0, "s", 2), **(kwargs | overrides)
    )
    return latents, population


def test_gated_high_gain_sparse_cells_read_a_unit_projection_of_the_latents_at_that_gain():
    """While bursting, log(rate - baseline) of a sparse cell is affine in the latents with a
    weight vector of norm ``sparse_gain`` exactly; between bursts it sits at baseline."""
    latents, population = _population(sparse_gain=3.0, stimulus_share=0.5)
    design = np.c_[latents, np.ones(len(latents))]
    for j in np.flatnonzero(~population.predictable):
        excess = population.rates[:, j] - model._SPARSE_BASELINE
        bursting = excess > 0
        assert 0.1 < bursting.mean() < 0.9, bursting.mean()
        fit, *_ = np.linalg.lstsq(design[bursting], np.log(excess[bursting]), rcond=None)
        np.testing.assert_allclose(np.linalg.norm(fit[:-1]), 3.0, rtol=1e-6)
        np.testing.assert_allclose(design[bursting] @ fit, np.log(excess[bursting]), atol=1e-6)


def test_stimulus_share_puts_that_share_of_every_weight_on_the_rotation_latents():
    weights = np.random.default_rng(0).normal(size=(10, len(model.LATENT_NAMES)))
    shared = model._with_stimulus_share(weights, 0.3)
    on_rotation = (shared[:, :2] ** 2).sum(axis=1) / (shared**2).sum(axis=1)
    np.testing.assert_allclose(on_rotation, 0.3)
