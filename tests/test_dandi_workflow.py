"""The DANDI source through the real workflow: checkpoint fan-out, downloads, Sessions.

A local archive on 127.0.0.1 answers the dandi client; snakemake lists the dandiset in
the `dandi_manifest` checkpoint, then fans out one download and one preprocess job per
asset and runs the rest of the DAG on the downloaded recordings.
"""

from __future__ import annotations

import json

import pytest
import yaml
from fake_dandi import FakeArchive
from real_layouts_ibl import write_ibl_nwb

from workflow_helpers import run_snakemake

pytestmark = pytest.mark.slow

VERSION = "0.240101.0000"
EIDS = (
    "5dcee0eb-b34d-4652-acc3-d10afc6eae68",
    "c7bf2d49-4937-4597-b307-9f39cb1c7b16",
    "03d9a098-07bf-4765-88b7-85f8d8f620cc",
)
PATH = "sub-{subject}/sub-{subject}_ses-{eid}_desc-processed_behavior+ecephys.nwb"


def _config(tmp_path, api_url: str):
    config = {
        "device": "cpu",
        "seeds": [0],
        "sizes": ["tiny"],
        "methods": ["linear"],
        "compute": {"gpus": 0},
        "datasets": {
            "ibl_fake": {
                "source": "dandi",
                "modalities": ["spikes"],
                "dandi": {
                    "dandiset": "000409",
                    "version": VERSION,
                    "glob": "sub-*/*desc-processed*.nwb",
                    "api_url": api_url,
                    "retries": 2,
                },
                "ibl": {"min_reaction_time": 0.08, "max_reaction_time": 2.0},
                "split": {"windows": "trials", "heldout_sessions": [EIDS[2]]},
                "tasks": {"spikes": ["co_smoothing"]},
            }
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_checkpoint_fans_out_downloads_and_sessions_and_rerun_fetches_nothing(tmp_path):
    files = tmp_path / "nwb"
    files.mkdir()
    with FakeArchive(dandiset="000409", version=VERSION) as archive:
        for k, eid in enumerate(EIDS):
            subject = f"M{k}"
            nwb = write_ibl_nwb(files / f"{k}.nwb", "processed", subject, k)
            archive.add(PATH.format(subject=subject, eid=eid), nwb.read_bytes())
        archive.add("sub-M0/sub-M0_ses-x_desc-raw_ecephys.nwb", b"raw, never listed")
        workdir = tmp_path / "work"
        workdir.mkdir()
        config = _config(tmp_path, archive.api_url)
        run_snakemake(workdir, configfile=config)

        results = workdir / "results" / "ibl_fake"
        manifest = json.loads((results / "manifest.json").read_text())
        assert manifest["version"] == VERSION
        assert sorted(p.name for p in (results / "sessions").glob("*.h5")) == sorted(
            f"{eid}.spikes.h5" for eid in EIDS
        )
        raw = workdir / "resources" / "raw" / "ibl_fake" / "dandi"
        assert len(list(raw.rglob("*.nwb"))) == 3 and not list(raw.rglob("*.part"))
        splits = json.loads((results / "splits.json").read_text())
        assert splits["sessions"]["heldout"] == [EIDS[2]]
        assert (results / "eval" / "linear" / "spikes" / "na" / "seed0" / "metrics.json").exists()
        assert (results / "report" / "index.html").exists()

        fetched = sum(archive.blob_requests.values())
        again = run_snakemake(workdir, configfile=config)
        assert "Nothing to be done" in again.stdout + again.stderr
        assert sum(archive.blob_requests.values()) == fetched
