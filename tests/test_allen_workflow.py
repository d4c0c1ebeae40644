"""config/allen_visual_coding.yaml end to end on a local DANDI archive (tiny sizes).

The archive serves files in 000728's layout (tests/real_layouts_allen.py) at the pinned
version under the paths DANDI uses; the workflow lists, downloads, reads them with the
Allen reader, splits by stimulus epochs, trains, evaluates and writes the report, and a
second run finds nothing to do and fetches nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_dandi import FakeArchive
from real_layouts_allen import write_allen_nwb

from workflow_helpers import REPO, run_snakemake

pytestmark = pytest.mark.slow

PATH = "sub-{subject}/sub-{subject}_ses-{experiment}-StimA_behavior+image+ophys.nwb"
SUBJECTS = ("222420", "222424", "222426")


def _config(tmp_path: Path, api_url: str) -> tuple[Path, dict]:
    config = yaml.safe_load((REPO / "config" / "allen_visual_coding.yaml").read_text())
    dataset = config["datasets"]["allen_visual_coding"]
    dataset["dandi"].update(api_url=api_url, retries=2)
    config.update(device="cpu", seeds=[0], sizes=["tiny"], methods=["linear"], compute={"gpus": 0})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, dataset


def test_allen_config_runs_to_the_report_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    files = tmp_path / "nwb"
    files.mkdir()
    with FakeArchive(dandiset="000728", version="0.240827.1809") as archive:
        for k, subject in enumerate(SUBJECTS):
            nwb = write_allen_nwb(files / f"{k}.nwb", subject, seed=k)
            archive.add(PATH.format(subject=subject, experiment=500000000 + k), nwb.read_bytes())
        archive.add(
            "sub-222420/sub-222420_ses-500000009-StimB_behavior+image+ophys.nwb", b"not StimA"
        )
        workdir = tmp_path / "work"
        workdir.mkdir()
        config, dataset = _config(tmp_path, archive.api_url)
        run_snakemake(workdir, configfile=config)

        results = workdir / "results" / "allen_visual_coding"
        manifest = json.loads((results / "manifest.json").read_text())
        assert manifest["version"] == dataset["dandi"]["version"] == "0.240827.1809"
        assert sorted(p.name for p in (results / "sessions").glob("*.h5")) == [
            f"{500000000 + k}-StimA.calcium.h5" for k in range(3)
        ]
        splits = json.loads((results / "splits.json").read_text())
        assert len(splits["sessions"]["heldout"]) == dataset["split"]["n_heldout_subjects"]
        metrics = (results / "report" / "metrics.csv").read_text()
        for task in dataset["tasks"]["calcium"]:
            assert task in metrics, task
        assert (results / "report" / "index.html").exists()

        fetched = sum(archive.blob_requests.values())
        again = run_snakemake(workdir, configfile=config)
        assert "Nothing to be done" in again.stdout + again.stderr
        assert sum(archive.blob_requests.values()) == fetched
