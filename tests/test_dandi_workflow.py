"""config/ibl_repeated_site.yaml through the real workflow, on a local DANDI archive.

A local archive on 127.0.0.1 answers the dandi client with files in the desc-processed
layout (tests/real_layouts_ibl.py) for a few of the configured eids; the overlay changes
only the API address and the budgets (tiny sizes, one seed, two methods). Snakemake lists
the dandiset in the `dandi_manifest` checkpoint, names the configured sessions the
archive lacks and goes on without them (``missing_sessions: skip``), fans out one download
and one preprocess job per asset, and runs the DAG to the report; a rerun does nothing.
"""

from __future__ import annotations

import json

import pytest
import yaml
from fake_dandi import FakeArchive
from real_layouts_ibl import ASSET_PATH, write_ibl_nwb

from neurossl.data.session import read_session
from workflow_helpers import REPO, run_snakemake

pytestmark = pytest.mark.slow

CONFIG = REPO / "config" / "ibl_repeated_site.yaml"
DATASET = "ibl_repeated_site"


def _overlay(tmp_path, api_url: str):
    overlay = {
        "device": "cpu",
        "seeds": [0],
        "sizes": ["tiny"],
        "methods": ["mtm", "linear"],
        "compute": {"gpus": 0},
        "hparams": {
            "mtm": {
                "finetune_batch_size": 8,
                "pretrain_steps": 10,
                "stitch_steps": 5,
                "max_steps": 10,
                "decode_steps": 5,
            }
        },
        "datasets": {DATASET: {"dandi": {"api_url": api_url, "retries": 1}}},
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def test_the_ibl_config_runs_to_the_report_and_a_rerun_does_nothing(tmp_path):
    spec = yaml.safe_load(CONFIG.read_text())["datasets"][DATASET]
    configured = spec["dandi"]["sessions"]
    heldout = spec["split"]["heldout_sessions"]
    served = [*heldout, next(e for e in configured if e not in heldout)]
    files = tmp_path / "nwb"
    files.mkdir()
    with FakeArchive(dandiset="000409", version="draft") as archive:
        for k, eid in enumerate(served):
            subject = f"NYU-{k}"
            # d57df551's left video failed QC upstream: the converter wrote no left camera.
            cameras = ("Right",) if eid.startswith("d57df551") else ("Left", "Right")
            nwb = write_ibl_nwb(files / f"{k}.nwb", subject, k, eid=eid, cameras=cameras)
            archive.add(ASSET_PATH.format(subject=subject, eid=eid), nwb.read_bytes())
        archive.add("sub-NYU-0/sub-NYU-0_ses-x_desc-raw_ecephys.nwb", b"raw, never listed")
        workdir = tmp_path / "work"
        workdir.mkdir()
        configs = [CONFIG, _overlay(tmp_path, archive.api_url)]
        run_snakemake(workdir, configfile=configs)

        results = workdir / "results" / DATASET
        manifest = json.loads((results / "manifest.json").read_text())
        assert [a["session"] for a in manifest["assets"]] == [e for e in configured if e in served]
        assert manifest["missing_sessions"] == [e for e in configured if e not in served]
        log = (results / "logs" / "download" / "manifest.log").read_text()
        assert f"{len(configured) - len(served)} of {len(configured)} configured" in log
        assert all(e in log for e in manifest["missing_sessions"])
        assert sorted(p.name for p in (results / "sessions").glob("*.h5")) == sorted(
            f"{eid}.spikes.h5" for eid in served
        )
        right = read_session(results / "sessions" / f"{heldout[1]}.spikes.h5")
        assert right.meta["whisker_motion_energy_source"].endswith("RightCameraMotionEnergy")
        assert right.behavior_names == ["wheel_speed", "whisker_motion_energy"]
        assert set(right.neurons["region"]) <= {"CA1", "CA3", "DG", "LP", "VISa", "unknown"}
        splits = json.loads((results / "splits.json").read_text())
        assert splits["sessions"]["heldout"] == sorted(heldout)
        assert (results / "report" / "index.html").exists()
        metrics = (results / "report" / "metrics.csv").read_text()
        for task in spec["tasks"]["spikes"]:
            assert f",{task}," in metrics, task

        fetched = sum(archive.blob_requests.values())
        again = run_snakemake(workdir, "-n", configfile=configs)
        assert "Nothing to be done" in again.stdout + again.stderr
        assert sum(archive.blob_requests.values()) == fetched
