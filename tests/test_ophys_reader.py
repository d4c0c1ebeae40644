"""Generic ophys reading of labs' layouts, each written with pynwb as its tool writes it.

- neuroconv: a series named ``DfOverF`` inside a ``Fluorescence`` container, beside raw F;
- suite2p's NWB export (suite2p/io/nwb.py ``save_nwb``): three single-series Fluorescence
  containers ``Fluorescence``, ``Neuropil``, ``Deconvolved``, each holding ``plane0``,
  written (ROIs x frames) by older versions, with a rate;
- timestamps only, with dropped frames;
- raw F only (no neuropil), and files with several candidates.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject
from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel

from neurossl.data.dff import (
    BASELINE_PERCENTILE,
    NEUROPIL_COEFFICIENT,
    dff_from_fluorescence,
    running_percentile,
)
from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_fields import NWBFormatError

N_ROIS, N_FRAMES, RATE = 5, 1800, 30.0


def _file(containers: dict[str, tuple[type, dict[str, dict]]]) -> NWBFile:
    """containers: name -> (DfOverF | Fluorescence, {series name: series kwargs})."""
    nwbfile = NWBFile(
        session_description="ophys",
        identifier="x",
        session_start_time=datetime(2024, 1, 1, tzinfo=UTC),
        subject=Subject(subject_id="m1", species="Mus musculus"),
    )
    device = nwbfile.create_device(name="Microscope")
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(name="ch", description="green", emission_lambda=520.0),
        description="plane",
        device=device,
        excitation_lambda=920.0,
        indicator="GCaMP6s",
        location="VISp",
    )
    module = nwbfile.create_processing_module("ophys", "ophys")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    module.add(segmentation)
    rois = segmentation.create_plane_segmentation(
        name="PlaneSegmentation", description="rois", imaging_plane=plane
    )
    for k in range(N_ROIS):
        rois.add_roi(pixel_mask=[(k, k, 1.0)])
    for name, (kind, series) in containers.items():
        container = kind(name=name)
        module.add(container)
        for series_name, kwargs in series.items():
            region = rois.create_roi_table_region(description="all", region=list(range(N_ROIS)))
            container.create_roi_response_series(
                name=series_name, rois=region, unit="n.a.", **kwargs
            )
    return nwbfile


def _write(path: Path, nwbfile: NWBFile) -> Path:
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _read(path: Path, series: str | None = None):
    return nwb_to_sessions(
        path,
        dataset="d",
        session="s",
        modalities=["calcium"],
        spike_bin_size=1.0,
        calcium_series=series,
    )["calcium"]


def _traces(seed: int, level: float = 0.0) -> np.ndarray:
    return level + np.random.default_rng(seed).gamma(1.0, 0.2, (N_FRAMES, N_ROIS))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_neuroconv_dff_named_inside_fluorescence_is_taken_not_raw_f(tmp_path, caplog):
    dff, raw = _traces(0), _traces(1, 500.0)
    path = _write(
        tmp_path / "neuroconv.nwb",
        _file(
            {
                "Fluorescence": (
                    Fluorescence,
                    {
                        "RoiResponseSeries": {"data": raw, "rate": RATE},
                        "DfOverF": {"data": dff, "rate": RATE},
                    },
                )
            }
        ),
    )
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        session = _read(path)
    np.testing.assert_allclose(session.activity, dff.astype(np.float32))
    assert session.meta["calcium_series"] == "processing/ophys/Fluorescence/DfOverF"
    assert session.bin_size == 1 / RATE
    (warning,) = _warnings(caplog)
    assert str(path) in warning and "Fluorescence/DfOverF" in warning and "by its name" in warning


def test_suite2p_export_transposed_with_neuropil_subtraction_recorded(tmp_path, caplog):
    f, fneu, spks = _traces(2, 400.0), _traces(3, 100.0), _traces(4)
    layout = {
        name: (Fluorescence, {"plane0": {"data": data.T, "rate": RATE}})
        for name, data in (("Fluorescence", f), ("Neuropil", fneu), ("Deconvolved", spks))
    }
    path = _write(tmp_path / "suite2p.nwb", _file(layout))
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        session = _read(path)
    expected = dff_from_fluorescence(f, fneu, 1 / RATE).dff
    np.testing.assert_allclose(session.activity, expected, rtol=1e-5, atol=1e-6)
    assert session.activity.shape == (N_FRAMES, N_ROIS) and session.bin_size == 1 / RATE
    provenance = session.meta["calcium_provenance"]
    assert f"{NEUROPIL_COEFFICIENT} * neuropil" in provenance
    assert "processing/ophys/Neuropil/plane0" in provenance
    assert session.meta["calcium_series"] == "processing/ophys/Fluorescence/plane0"
    messages = _warnings(caplog)
    assert sum("read as (ROIs x frames)" in m for m in messages) == 2  # F, neuropil
    assert sum("computing dF/F from raw fluorescence" in m for m in messages) == 1
    assert all(str(path) in m for m in messages)


def test_timestamps_with_dropped_frames_are_put_on_a_regular_grid(tmp_path, caplog):
    times = np.delete(np.arange(N_FRAMES) / RATE, [100, 101, 102]) + 5.0
    dff = np.outer(times, np.arange(1, N_ROIS + 1))
    path = _write(
        tmp_path / "timestamps.nwb",
        _file({"DfOverF": (DfOverF, {"RoiResponseSeries": {"data": dff, "timestamps": times}})}),
    )
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        session = _read(path)
    assert session.n_bins == N_FRAMES and session.t0 == pytest.approx(5.0)
    assert session.bin_size == pytest.approx(1 / RATE)
    np.testing.assert_allclose(session.activity[:, 1], 2 * session.times, rtol=1e-5)
    (warning,) = _warnings(caplog)
    assert "DfOverF/RoiResponseSeries/timestamps" in warning and "resampled" in warning


def test_raw_f_only_becomes_dff_with_a_percentile_baseline(tmp_path, caplog):
    rng = np.random.default_rng(5)
    baseline = 400.0 + np.linspace(0.0, 40.0, N_FRAMES)[:, None]  # slow drift
    transients = np.where(rng.random((N_FRAMES, N_ROIS)) < 0.03, 1.0, 0.0)
    raw = baseline * (1.0 + transients)
    path = _write(
        tmp_path / "raw.nwb",
        _file({"Fluorescence": (Fluorescence, {"RoiResponseSeries": {"data": raw, "rate": RATE}})}),
    )
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        session = _read(path)
    # The 8th percentile of a window with 3 % transients follows the drifting baseline
    # (within the ~2 % a 30 s percentile lags a 40/400-per-minute ramp): dF/F is ~0
    # between transients and ~1 on them.
    quiet = transients == 0
    assert np.abs(session.activity[quiet]).max() < 0.03
    np.testing.assert_allclose(session.activity[~quiet], 1.0, atol=0.05)
    assert "8th percentile" in session.meta["calcium_provenance"]
    assert "neuropil" not in session.meta["calcium_provenance"]
    assert len(_warnings(caplog)) == 1


def test_running_percentile_matches_the_direct_definition():
    x = np.random.default_rng(6).random((300, 2))
    got = running_percentile(x, 1.0, 31.0, BASELINE_PERCENTILE)
    padded = np.pad(x, ((15, 15), (0, 0)), mode="edge")
    want = np.array([np.percentile(padded[t : t + 31], 8.0, axis=0) for t in range(300)])
    # Evaluated exactly every window / 10 = 3 frames, linearly interpolated in between.
    np.testing.assert_allclose(got[::3], want[::3])
    assert ((got >= want.min()) & (got <= want.max())).all()


def test_several_candidates_fail_with_the_list_and_the_key_picks_one(tmp_path):
    raw = {name: {"data": _traces(k, 300.0), "rate": RATE} for k, name in enumerate("AB")}
    path = _write(tmp_path / "two.nwb", _file({"Fluorescence": (Fluorescence, raw)}))
    with pytest.raises(NWBFormatError, match="calcium_series") as info:
        _read(path)
    assert "Fluorescence/A (raw fluorescence)" in str(info.value)
    assert "Fluorescence/B (raw fluorescence)" in str(info.value)
    assert str(path) in str(info.value)
    session = _read(path, "processing/ophys/Fluorescence/B")
    assert session.meta["calcium_series"] == "processing/ophys/Fluorescence/B"
    with pytest.raises(NWBFormatError, match=r"names no series.*Fluorescence/A"):
        _read(path, "C")


def test_neuropil_or_events_alone_are_not_a_response(tmp_path):
    layout = {"Neuropil": (Fluorescence, {"plane0": {"data": _traces(7, 100.0), "rate": RATE}})}
    path = _write(tmp_path / "neuropil_only.nwb", _file(layout))
    with pytest.raises(NWBFormatError, match=r"no dF/F or raw fluorescence.*\(neuropil\)"):
        _read(path)


def test_a_trace_without_a_positive_baseline_is_refused_with_its_roi(tmp_path):
    denoised = _traces(8)  # CNMF-like C: baseline ~0, not raw fluorescence
    denoised[:, 2] -= 5.0
    layout = {"Fluorescence": (Fluorescence, {"C": {"data": denoised, "rate": RATE}})}
    path = _write(tmp_path / "cnmf.nwb", _file(layout))
    with pytest.raises(NWBFormatError, match=r"baseline <= 0 for ROI id\(s\) \[.*'2'") as info:
        _read(path)
    assert str(path) in str(info.value) and "Fluorescence/C" in str(info.value)
