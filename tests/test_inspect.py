"""``neurossl inspect``: what the generic reader takes from a file, and which tasks it serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neurossl.cli import main
from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.sources.synthetic import SyntheticConfig, write_session_nwb
from neurossl.data.sources.synthetic_config import session_ids

CORPUS = Path(__file__).parent / "data" / "nwb_corpus"
CONFIG = SyntheticConfig(n_subjects=2, sessions_per_subject=1, n_trials=12, n_units=16, n_rois=8)


@pytest.fixture(scope="module")
def synthetic_nwb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    session = session_ids(CONFIG)[0]
    path = tmp_path_factory.mktemp("inspect") / f"{session}.nwb"
    write_session_nwb(CONFIG, session, path)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["inspect", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_synthetic_file_both_modalities_and_tasks(
    synthetic_nwb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, [report] = run_json(capsys, str(synthetic_nwb), "--bin-size", "0.05")
    assert code == 0
    truth = nwb_to_sessions(
        synthetic_nwb,
        dataset="d",
        session="s",
        modalities=["spikes", "calcium"],
        spike_bin_size=0.05,
    )
    spikes, calcium = report["modalities"]["spikes"], report["modalities"]["calcium"]
    assert spikes["error"] is None and calcium["error"] is None
    assert spikes["summary"]["n_neurons"] == truth["spikes"].n_neurons == 16
    assert spikes["summary"]["n_bins"] == truth["spikes"].n_bins
    assert spikes["summary"]["bin_size"] == pytest.approx(0.05)
    assert spikes["summary"]["n_trials"] == 12
    assert sum(spikes["summary"]["regions"].values()) == 16
    assert spikes["summary"]["behavior"] == truth["spikes"].behavior_names
    assert calcium["summary"]["n_neurons"] == truth["calcium"].n_neurons == 8
    tasks = {t["task"]: t for t in spikes["tasks"]}
    assert tasks["co_smoothing"]["ok"] and tasks["forecasting"]["ok"]
    assert tasks["choice"]["ok"]
    assert sum(tasks["choice"]["labels"].values()) == 12
    assert tasks["stimulus_class"]["ok"]
    assert all(tasks[f"behavior_{b}"]["ok"] for b in truth["spikes"].behavior_names)
    # the calcium series the Session holds, found by comparing values
    assert report["calcium_candidates"]
    assert "processing/ophys/DfOverF/RoiResponseSeries" in calcium["summary"]["series"]


def test_config_lists_tasks_the_file_cannot_serve(
    synthetic_nwb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "datasets": {
            "mine": {
                "source": "local",
                "modalities": ["spikes"],
                "preprocess": {"spike_bin_size": 0.05},
                "tasks": {"spikes": ["co_smoothing", "behavior_whisker_energy", "stimulus_nope"]},
            }
        }
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["inspect", str(synthetic_nwb), "--config", str(path)])
    text = capsys.readouterr().out
    assert code == 1
    assert "dataset 'mine', spikes: cannot serve" in text
    assert "behavior_whisker_energy: no behaviour variable" in text
    assert "stimulus_nope: no trial column" in text
    assert "co_smoothing:" not in text.split("cannot serve")[1]
    code, [report] = run_json(capsys, str(synthetic_nwb), "--config", str(path))
    assert report["modalities"]["spikes"]["summary"]["bin_size"] == pytest.approx(0.05)
    assert [t for t, _ in report["unserved"]["mine"]["spikes"]] == [
        "behavior_whisker_energy",
        "stimulus_nope",
    ]


def test_corpus_files_are_reported_never_raised(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in CORPUS.glob("*.nwb"))
    code, reports = run_json(capsys, *files)
    assert len(reports) == len(files)
    by_name = {Path(r["path"]).name: r for r in reports}
    nwb1 = by_name["allen_nwb1_496908818s.nwb"]
    assert nwb1["nwb_version"] == "NWB-1.0.5"
    assert all(m["error"] for m in nwb1["modalities"].values())
    assert code == 1  # the NWB 1.x file gives no Session
    suite2p = by_name["suite2p_export_2022_08_08.nwb"]
    assert [c["name"] for c in suite2p["calcium_candidates"]] == [
        "Deconvolved",
        "Fluorescence",
        "Neuropil",
    ]
    assert suite2p["calcium_candidates"][1]["shape"] == [219, 500]
    for report in reports:
        for modality in report["modalities"].values():
            assert modality["error"] is None or Path(report["path"]).name in modality["error"]


def test_text_output_names_nwb1_and_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(CORPUS / "allen_nwb1_496908818s.nwb")]) == 1
    text = capsys.readouterr().out
    assert "'NWB-1.0.5': NWB 1.x is not supported" in text
    assert "Convert the file to NWB 2" in text


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "absent.nwb")]) == 2
    assert "absent.nwb" in capsys.readouterr().err


def test_console_script_entry_point(synthetic_nwb: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "neurossl.cli", "inspect", str(synthetic_nwb)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "spikes: Session of 16 neurons" in done.stdout
    assert "calcium: Session of 8 neurons" in done.stdout


def test_layout_reader_of_a_configured_dataset_is_run_too(
    synthetic_nwb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "datasets": {
            "visual": {
                "source": "local",
                "modalities": ["calcium"],
                "allen": {},
                "tasks": {"calcium": ["forecasting"]},
            }
        }
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    _, [report] = run_json(capsys, str(synthetic_nwb), "--config", str(path))
    allen = report["modalities"]["visual/calcium"]
    assert allen["reader"] == "allen"
    assert report["modalities"]["calcium"]["reader"] == "nwb"
    if allen["error"] is not None:  # a synthetic file is not in the Allen layout
        assert synthetic_nwb.name in allen["error"]
        assert report["unserved"]["visual"]["calcium"][0][0] == "forecasting"


def test_a_file_that_is_not_hdf5_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not an HDF5 file")
    code, [report] = run_json(capsys, str(bad))
    assert code == 1
    assert report["nwb_version"] == "unreadable"
    assert all("bad.nwb" in m["error"] for m in report["modalities"].values())


def test_generic_reader_options_of_a_dataset_are_used(
    synthetic_nwb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "datasets": {
            "plain": {"source": "local", "modalities": ["calcium"], "tasks": {}},
            "picked": {
                "source": "local",
                "modalities": ["calcium"],
                "nwb": {"calcium_series": "RoiResponseSeries"},
                "tasks": {},
            },
        }
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    _, [report] = run_json(capsys, str(synthetic_nwb), "--config", str(path))
    assert "plain/calcium" not in report["modalities"]  # the generic report serves it
    assert report["modalities"]["picked/calcium"]["reader"] == "nwb"
