"""Benchmark report: statistics against scipy, tidy CSV, missing runs, best marks, HTML."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neurossl.names import FIGURES, METHOD_MODALITY, MODALITIES, NEURAL_METHODS
from neurossl.report.build import ReportInputs, ReportSettings, build_report, figure_paths
from neurossl.report.collect import TIDY_COLUMNS, collect
from neurossl.report.figures import run_on_steps
from neurossl.report.html import differences_html
from neurossl.report.provenance import config_hash, git_commit, read_benchmarks
from neurossl.report.tables import (
    FAMILIES,
    MISSING,
    OK,
    DifferenceTable,
    build_differences,
    build_table,
    seed_values,
)

REPO = Path(__file__).resolve().parents[1]
DATASET = "synthetic"
SESSIONS = ("sub-03_ses-01", "sub-03_ses-02")
SEEDS = (0, 1, 2)
#: Quality per method: higher is better for every score the fixture writes.
QUALITY = {
    "oracle": 0.9,
    "mtm": 0.6,
    "scratch_ndt": 0.4,
    "linear": 0.3,
    "persistence": 0.2,
    "calm": 0.55,
    "scratch_dual_axis": 0.35,
    "poyo_ssl": 0.5,
    "poyo_ssl_reverse": 0.45,
    "scratch_perceiver": 0.42,
}
TASKS = {
    "spikes": ["co_smoothing", "forecasting", "choice"],
    "calcium": ["forecasting", "stimulus_class"],
}
#: The runs the fixture deliberately leaves out, and the tasks it leaves out of runs.
ABSENT_RUNS = {("scratch_ndt", "spikes", "tiny", 2)} | {
    ("persistence", "calcium", "na", s) for s in SEEDS
}
ABSENT_TASKS = {("mtm", "spikes", "tiny", 1): "choice"}
#: Tasks a method never reports (not supported).
UNSUPPORTED = {"oracle": {"choice"}, "scratch_dual_axis": {"stimulus_class"}}
HORIZON = 3


def fixture_config(**report: object) -> dict:
    return {
        "results": "results",
        "seeds": list(SEEDS),
        "sizes": ["tiny"],
        "scaling": {"methods": ["mtm"], "sizes": ["small"]},
        "methods": list(QUALITY),
        "datasets": {
            DATASET: {
                "source": "synthetic",
                "modalities": ["spikes", "calcium"],
                "tasks": copy.deepcopy(TASKS),
            }
        },
        "report": dict(report),
    }


def expected_runs(config: dict) -> list[tuple[str, str, str, int]]:
    """The grid common.smk's eval_targets builds, for the fixture config."""
    runs = []
    for method in config["methods"]:
        wanted = METHOD_MODALITY.get(method, "any")
        neural = method in NEURAL_METHODS
        sizes = ["tiny", *(["small"] if method in config["scaling"]["methods"] else [])]
        for modality in MODALITIES:
            if wanted not in (modality, "any"):
                continue
            for size in sizes if neural else ["na"]:
                runs += [(method, modality, size, seed) for seed in SEEDS]
    return runs


def true_value(method: str, size: str, task: str, metric: str, seed: int, session: int) -> float:
    """A deterministic score: method quality, size bonus, seed and session noise."""
    rng = np.random.default_rng([len(method), seed, session, len(task), len(metric)])
    value = QUALITY[method] + (0.05 if size == "small" else 0.0) + rng.normal(0, 0.02)
    if metric.startswith(("mae", "mse")):
        return 1.0 - value  # an error: lower is better
    return value


def task_metrics(modality: str, task: str) -> list[str]:
    if task == "choice":
        return ["bacc", "acc"]
    if task.startswith("stimulus_"):
        return ["bacc", "acc"]
    if modality == "spikes":
        return ["bps", "poisson_d2", "poisson_d2_pooled"]
    steps = [f"{m}_h{k}" for m in ("mae", "mse", "r2") for k in range(1, HORIZON + 1)]
    return ["r2", "mse", "mae", *steps]


def write_fixture(root: Path, config: dict) -> ReportInputs:
    """Fake results of every stage under root/results/synthetic; returns the report inputs."""
    dataset_dir = root / "results" / DATASET
    paths = []
    for method, modality, size, seed in expected_runs(config):
        run_dir = dataset_dir / "eval" / method / modality / size / f"seed{seed}"
        path = run_dir / "metrics.json"
        paths.append(path)
        if (method, modality, size, seed) in ABSENT_RUNS:
            continue
        rows = []
        for task in TASKS[modality]:
            if task in UNSUPPORTED.get(method, ()):
                continue
            if ABSENT_TASKS.get((method, modality, size, seed)) == task:
                continue
            for i, session in enumerate(SESSIONS):
                for metric in task_metrics(modality, task):
                    value = true_value(method, size, task, metric, seed, i)
                    if (method, metric, seed, i) == ("linear", "r2_h3", 0, 0):
                        value = float("nan")  # an undefined score must survive as NaN
                    rows.append(
                        dict(
                            dataset=DATASET,
                            session=f"{session}.{modality}",
                            method=method,
                            size=size,
                            task=task,
                            metric=metric,
                            seed=seed,
                            value=value,
                        )
                    )
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"rows": rows}))
        if modality == "spikes" and size in ("tiny", "na"):
            write_predictions(run_dir / "predictions.npz", method, seed)
        if method in ("mtm", "scratch_ndt", "calm", "scratch_dual_axis"):
            for stage in ("pretrain", "finetune") if method in ("mtm", "calm") else ("finetune",):
                write_train_log(dataset_dir / stage / method / modality / size / f"seed{seed}")
    write_benchmarks(dataset_dir / "benchmarks")
    return ReportInputs(
        dataset=DATASET,
        config=config,
        metrics_paths=tuple(paths),
        dataset_dir=dataset_dir,
        workflow_dir=REPO / "workflow",
        splits=write_splits(dataset_dir / "splits.json"),
        neuron_stats=write_neuron_stats(dataset_dir / "neuron_stats.csv"),
        summary_json=write_summary(dataset_dir / "report" / "summary"),
        summary_images={"Neurons per region": dataset_dir / "report/summary/regions.png"},
    )


def write_predictions(path: Path, method: str, seed: int) -> None:
    """Co-smoothing arrays: held-out neurons 6..11 scored, predictions closer for better methods."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for session in SESSIONS:
        true = np.exp(np.random.default_rng(7).normal(-1.0, 0.6, size=(4, 20, 12)))
        target = rng.poisson(true).astype(np.float32)
        noise = np.exp(rng.normal(0, 1.0 - QUALITY[method], size=true.shape))
        pred = np.full(true.shape, np.nan)
        pred[..., 6:] = (true * noise)[..., 6:]
        arrays[f"co_smoothing/{session}/pred"] = pred
        arrays[f"co_smoothing/{session}/target"] = target
    np.savez(path, **arrays)


def write_train_log(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = np.arange(1, 21)
    log = pd.DataFrame(
        {
            "step": steps,
            "train_loss": 2.0 / np.sqrt(steps),
            "valid_loss": np.where(steps % 5 == 0, 2.2 / np.sqrt(steps), np.nan),
            "lr": 1e-3 * np.minimum(1, steps / 5),
        }
    )
    log.to_csv(run_dir / "train_log.csv", index=False)


BENCHMARK_HEADER = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
)


def write_benchmarks(directory: Path) -> None:
    for stage, job, seconds, rss in (
        ("evaluate", "mtm.spikes.tiny.seed0", 12.5, 812.3),
        ("finetune", "mtm.spikes.tiny.seed0", 90.0, 1500.0),
    ):
        (directory / stage).mkdir(parents=True, exist_ok=True)
        (directory / stage / f"{job}.tsv").write_text(
            f"{BENCHMARK_HEADER}\n{seconds}\t0:00:12\t{rss}\t900\t700\t750\t1.0\t2.0\t95.0\t11.9\n"
        )


def write_splits(path: Path) -> Path:
    predictability = {
        m: {
            "skewness_threshold": 1.0,
            "kurtosis_threshold": 3.0,
            "threshold_source": "knee",
            "precision": 0.9,
            "recall": 0.8,
        }
        for m in MODALITIES
    }
    payload = {
        "format_version": 1,
        "dataset": DATASET,
        "seed": 0,
        "sessions": {"pretrain": ["sub-01_ses-01"], "heldout": list(SESSIONS)},
        "windows": {},
        "neurons": {},
        "predictability": predictability,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def write_neuron_stats(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 20
    pd.DataFrame(
        {
            "session": "sub-01_ses-01",
            "modality": np.repeat(["spikes", "calcium"], n // 2),
            "neuron": [f"n{i}" for i in range(n)],
            "skewness": rng.gamma(2.0, 0.6, n),
            "kurtosis": rng.gamma(2.0, 2.0, n),
            "predictable": rng.random(n) < 0.5,
        }
    ).to_csv(path, index=False)
    return path


def write_summary(directory: Path) -> Path:
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar(["VISp", "CA1"], [10, 6])
    fig.savefig(directory / "regions.png")
    plt.close(fig)
    path = directory / "dataset_summary.json"
    path.write_text(json.dumps({"dataset": DATASET, "sessions": list(SESSIONS)}))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full report build shared by the read-only tests of this module.

    Built with two worker processes (the report rule's setting); the other builds of
    this module draw inline, so both paths are exercised.
    """
    root = tmp_path_factory.mktemp("report")
    inputs = write_fixture(root, fixture_config())
    report_dir = root / "results" / DATASET / "report"
    collection = build_report(inputs, report_dir, workers=2)
    html = (report_dir / "index.html").read_text()
    return inputs, collection, report_dir, html


def test_report_process_leaves_torch_to_its_workers(tmp_path):
    """Parameter counts and the device's name need torch; the report's own process builds
    the tables meanwhile without it (torch's import is ~2 s of the workflow's last job)."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "from test_report import fixture_config, write_fixture\n"
        "from neurossl.report.build import build_report\n"
        f"root = Path({str(tmp_path)!r})\n"
        "build_report(write_fixture(root, fixture_config()), root / 'report', workers=2)\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "torch imported: False" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "report" / "index.html").exists()


def family(key: str):
    return next(f for f in FAMILIES if f.key == key)


def differences(collection, family_key: str, metric: str):
    """The paired-improvement table of one family and metric, at 95 %."""
    per_seed = seed_values(collection.metrics)
    table = build_table(collection, per_seed, family(family_key), (metric,), 0.95)
    return build_differences(per_seed, table, 0.95)


def seed_means(method: str, size: str, task: str, metric: str, seeds=SEEDS) -> np.ndarray:
    """The fixture's per-seed values pooled over sessions, computed independently."""
    return np.array(
        [np.mean([true_value(method, size, task, metric, s, i) for i in range(2)]) for s in seeds]
    )


def test_ci_matches_scipy_t_interval(built):
    _, collection, _, html = built
    per_seed = seed_values(collection.metrics)
    table = build_table(collection, per_seed, family("activity_spikes"), ("bps",), 0.95)
    cell = table.cells[(("mtm", "tiny"), ("co_smoothing", "bps"))]
    values = seed_means("mtm", "tiny", "co_smoothing", "bps")
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert cell.state == OK and cell.n_seeds == 3
    assert cell.mean == pytest.approx(values.mean(), abs=1e-12)
    assert (cell.lo, cell.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert f"[{lo:.3g}, {hi:.3g}]" in html
    # A 90 % interval is narrower, and the same scipy formula gives it.
    narrow = build_table(collection, per_seed, family("activity_spikes"), ("bps",), 0.9)
    lo90, hi90 = stats.t.interval(0.9, 2, loc=values.mean(), scale=stats.sem(values))
    cell90 = narrow.cells[(("mtm", "tiny"), ("co_smoothing", "bps"))]
    assert (cell90.lo, cell90.hi) == pytest.approx((lo90, hi90), abs=1e-12)


def test_paired_difference_uses_shared_seeds_and_direction(built):
    _, collection, _, html = built
    diff = differences(collection, "activity_spikes", "bps").cells[
        (("mtm", "tiny", "scratch"), ("co_smoothing", "bps"))
    ]
    # scratch_ndt seed 2 is absent: the comparison pairs seeds 0 and 1 only.
    d = seed_means("mtm", "tiny", "co_smoothing", "bps", (0, 1)) - seed_means(
        "scratch_ndt", "tiny", "co_smoothing", "bps", (0, 1)
    )
    lo, hi = stats.t.interval(0.95, 1, loc=d.mean(), scale=stats.sem(d))
    assert diff.reference == "scratch_ndt" and diff.n == 2
    assert (diff.mean, diff.lo, diff.hi) == pytest.approx((d.mean(), lo, hi), abs=1e-12)
    # bits/spike is a skill score (0 = null model): no relative gain is given for it.
    assert np.isnan(diff.relative)
    # Errors: positive improvement means lower error than the reference.
    gain = differences(collection, "activity_calcium", "mae").cells[
        (("calm", "tiny", "best baseline"), ("forecasting", "mae"))
    ]
    assert gain.reference == "linear" and gain.mean > 0
    # ... and a positive relative gain is the relative error reduction, with its t CI.
    calm = seed_means("calm", "tiny", "forecasting", "mae")
    linear = seed_means("linear", "tiny", "forecasting", "mae")
    r = (linear - calm) / linear
    rlo, rhi = stats.t.interval(0.95, r.size - 1, loc=r.mean(), scale=stats.sem(r))
    relative = (gain.relative, gain.relative_lo, gain.relative_hi)
    assert relative == pytest.approx((r.mean(), rlo, rhi), abs=1e-12) and gain.relative > 0
    assert f"({gain.relative:+.1%} [{gain.relative_lo:+.0%}, {gain.relative_hi:+.0%}])" in html


def test_best_marking_direction_and_oracle_excluded(built):
    _, collection, _, _ = built
    per_seed = seed_values(collection.metrics)
    table = build_table(collection, per_seed, family("activity_calcium"), ("r2", "mae"), 0.95)
    best = {c: [r for r in table.rows if table.cells[(r, c)].best] for c in table.columns}
    # MtM runs on calcium too; its scaling size scores highest in the fixture.
    assert best[("forecasting", "r2")] == [("mtm", "small")]  # highest, oracle aside
    assert best[("forecasting", "mae")] == [("mtm", "small")]  # lowest error
    assert ("oracle", "na") in table.rows
    assert not any(table.cells[(("oracle", "na"), c)].best for c in table.columns)
    means = {r: table.cells[(r, ("forecasting", "mae"))].mean for r in table.rows}
    assert means[("oracle", "na")] < means[("mtm", "small")]  # the ceiling is better still


def test_tidy_csv_schema(built):
    _, collection, report_dir, _ = built
    csv = pd.read_csv(report_dir / "metrics.csv")
    assert tuple(csv.columns) == TIDY_COLUMNS
    assert csv["seed"].dtype == np.int64 and csv["value"].dtype == np.float64
    for column in ("dataset", "session", "method", "size", "task", "metric"):
        assert pd.api.types.is_string_dtype(csv[column])
    assert len(csv) == len(collection.metrics)
    nan_rows = csv[csv["value"].isna()]
    assert nan_rows[["method", "metric", "seed"]].values.tolist() == [["linear", "r2_h3", 0]]
    assert set(csv["size"]) == {"tiny", "small", "na"}
    assert csv["session"].str.fullmatch(r"sub-\d+_ses-\d+\.(spikes|calcium)").all()


def test_missing_runs_and_tasks_are_listed_never_dropped(built):
    _, collection, _, html = built
    missing = collection.missing
    runs = {
        tuple(r)
        for r in missing[missing["task"] == ""][["method", "modality", "size", "seed"]].values
    }
    assert runs == ABSENT_RUNS
    tasks = missing[missing["task"] != ""]
    assert tasks[["method", "modality", "size", "seed", "task"]].values.tolist() == [
        ["mtm", "spikes", "tiny", 1, "choice"]
    ]
    per_seed = seed_values(collection.metrics)
    decoding = build_table(collection, per_seed, family("decoding_spikes"), ("bacc",), 0.95)
    partial = decoding.cells[(("mtm", "tiny"), ("choice", "bacc"))]
    assert (partial.state, partial.n_seeds, partial.n_missing) == (OK, 2, 1)
    assert "oracle (na)" in decoding.not_supported  # never reports choice: "—"
    calcium = build_table(collection, per_seed, family("activity_calcium"), ("r2",), 0.95)
    absent = calcium.cells[(("persistence", "na"), ("forecasting", "r2"))]
    assert (absent.state, absent.n_missing) == (MISSING, 3)
    calcium_dec = build_table(collection, per_seed, family("decoding_calcium"), ("bacc",), 0.95)
    # Its only calcium decoding task is unsupported: a "—" row, summarised under the table.
    assert "scratch_dual_axis (tiny)" in calcium_dec.not_supported
    assert calcium_dec.cells[(("calm", "tiny"), ("stimulus_class", "bacc"))].state == OK
    # The page says so, with every missing entry in its table.
    assert "4 of" in html and "1 task results are absent" in html
    table = html.split("id='missing-table'>")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + len(missing)
    assert "metrics.json absent" in table and "task absent" in table
    assert html.count("missing (3 runs)") >= 1


def test_missing_task_column_stays_visible(tmp_path):
    """A configured task that no run reported is a column of 'missing' cells, not absent."""
    config = fixture_config()
    config["datasets"][DATASET]["tasks"]["spikes"].append("behavior_wheel_speed")
    inputs = write_fixture(tmp_path, config)
    # Only one run's file is missing; no run reports behavior_wheel_speed.
    collection = collect(DATASET, inputs.metrics_paths, config["datasets"][DATASET]["tasks"])
    table = build_table(
        collection, seed_values(collection.metrics), family("decoding_spikes"), ("r2",), 0.95
    )
    assert ("behavior_wheel_speed", "r2") in table.columns
    cell = table.cells[(("scratch_ndt", "tiny"), ("behavior_wheel_speed", "r2"))]
    assert cell.state == MISSING


def test_provenance_fields(built, tmp_path):
    inputs, _, _, html = built
    canonical = json.dumps(inputs.config, sort_keys=True, separators=(",", ":"))
    assert config_hash(inputs.config) == hashlib.sha256(canonical.encode()).hexdigest()
    assert config_hash(inputs.config) in html
    reordered = dict(reversed(list(inputs.config.items())))
    assert config_hash(reordered) == config_hash(inputs.config)
    assert git_commit(tmp_path) == "unknown"
    commit = git_commit(REPO)
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    # HEAD may move between the build and this line (commits land concurrently).
    assert re.search(r"git commit</td><td class='label'>([0-9a-f]{40}(\+dirty)?|unknown)<", html)
    for field in (
        "device",
        "python",
        "version: torch",
        "version: numpy",
        "version: snakemake",
        "version: pynwb",
        "Wall time and peak memory",
    ):
        assert field in html
    bench = read_benchmarks(inputs.dataset_dir / "benchmarks")
    row = bench[bench["stage"] == "finetune"].iloc[0]
    assert (row["job"], row["seconds"], row["max_rss_mb"]) == (
        "mtm.spikes.tiny.seed0",
        90.0,
        1500.0,
    )
    assert "mtm.spikes.tiny.seed0" in html and "seeds: [0, 1, 2]" not in html
    assert "- 0\n- 1\n- 2" in html or "seeds:\n- 0" in html  # the config YAML is embedded


def test_metric_glossary_is_on_the_page_escaped(built):
    html = built[3]
    assert "<h2 id='glossary'>Metric glossary</h2>" in html
    assert "<code>poisson_d2_pooled</code>" in html
    assert "&lt;metric&gt;_h&lt;k&gt;" in html


def test_html_is_self_contained_and_shows_every_figure(built):
    _, _, report_dir, html = built
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r"<img [^>]*src='([^']+)'", html)
    assert len(sources) == len(FIGURES) + 1  # + the dataset summary image
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for png, svg in figure_paths(report_dir).values():
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in svg.read_text()[:2000]


def test_figures_and_page_without_any_results(tmp_path):
    """No metrics at all: every declared output still exists, and every run is missing."""
    config = fixture_config()
    paths = tuple(
        tmp_path / "results" / DATASET / "eval" / m / mod / size / f"seed{s}" / "metrics.json"
        for m, mod, size, s in expected_runs(config)
    )
    inputs = ReportInputs(DATASET, config, paths, tmp_path / "results" / DATASET, tmp_path)
    report_dir = tmp_path / "report"
    collection = build_report(inputs, report_dir)
    assert len(collection.missing) == len(paths)
    for png, svg in figure_paths(report_dir).values():
        assert png.exists() and svg.exists()
    html = (report_dir / "index.html").read_text()
    assert f"{len(paths)} of {len(paths)} expected runs are missing" in html
    assert "no data:" not in html  # the message is inside the PNG, not the page
    assert tuple(pd.read_csv(report_dir / "metrics.csv").columns) == TIDY_COLUMNS


def test_metric_selection_changes_only_the_tables(tmp_path):
    inputs = write_fixture(tmp_path, fixture_config(metrics=["bps", "r2"]))
    build_report(inputs, tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<br>bps</th>" in html and "<br>poisson_d2</th>" not in html
    csv = pd.read_csv(tmp_path / "report" / "metrics.csv")
    assert "poisson_d2" in set(csv["metric"])  # the tidy table keeps every metric


def test_fewer_seeds_than_the_protocol_are_flagged_as_a_smoke_run(built, tmp_path):
    assert "smoke run" not in built[3]  # three seeds: a result
    config = fixture_config()
    config["seeds"] = [0]
    inputs = write_fixture(tmp_path, config)
    build_report(inputs, tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    assert "1 training seed(s): a smoke run, not a result." in html
    assert "config/protocol.yaml" in html


def test_bad_inputs_name_the_fault(tmp_path):
    with pytest.raises(ValueError, match=r"report\.metrics.*'bits'"):
        ReportSettings.from_config({"metrics": ["bits"]})
    with pytest.raises(ValueError, match=r"report\.headline"):
        ReportSettings.from_config({"headline": ["spikes/co_smoothing"]})
    with pytest.raises(ValueError, match="unknown key"):
        ReportSettings.from_config({"metric": ["bps"]})
    run = tmp_path / "eval" / "mtm" / "spikes" / "tiny" / "seed0" / "metrics.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"rows": [{"dataset": DATASET, "method": "mtm"}]}))
    with pytest.raises(ValueError, match=r"metrics\.json: rows\[0\] lacks field\(s\)"):
        collect(DATASET, [run], TASKS)
    row = dict(
        dataset=DATASET,
        session="s.spikes",
        method="ndt",
        size="tiny",
        task="co_smoothing",
        metric="bps",
        seed=0,
        value=0.1,
    )
    run.write_text(json.dumps({"rows": [row]}))
    with pytest.raises(ValueError, match=r"rows\[0\]\.method is 'ndt', path says 'mtm'"):
        collect(DATASET, [run], TASKS)
    with pytest.raises(ValueError, match=r"not a metrics\.json of the layout"):
        collect(DATASET, [tmp_path / "metrics.json"], TASKS)


def test_seed_independent_rows_repeat_for_every_seed_but_csv_keeps_them_once():
    from neurossl.report.collect import repeat_seed_independent, tidy_dtypes

    rows = [
        ("d", "s.calcium", "persistence", "na", "forecasting", "mae", 0, 0.5),
        ("d", "s.calcium", "rnn", "na", "forecasting", "mae", 0, 0.4),
        ("d", "s.calcium", "rnn", "na", "forecasting", "mae", 1, 0.3),
    ]
    metrics = tidy_dtypes(pd.DataFrame(rows, columns=list(TIDY_COLUMNS)).assign(modality="calcium"))
    repeated = repeat_seed_independent(metrics, [0, 1, 2])
    persistence = repeated[repeated["method"] == "persistence"]
    assert sorted(persistence["seed"]) == [0, 1, 2]
    assert (persistence["value"] == 0.5).all()
    # A seeded method is never filled in: its missing seed stays missing.
    assert sorted(repeated[repeated["method"] == "rnn"]["seed"]) == [0, 1]
    assert len(metrics) == 3  # the input (what metrics.csv is written from) is untouched


def test_poyo_ssl_is_also_compared_with_its_data_diet_ablations(built):
    _, collection, _, html = built
    diffs = differences(collection, "decoding_calcium", "bacc")
    diff = diffs.cells[(("poyo_ssl", "tiny", "poyo_ssl_reverse"), ("stimulus_class", "bacc"))]
    poyo = seed_means("poyo_ssl", "tiny", "stimulus_class", "bacc")
    reverse = seed_means("poyo_ssl_reverse", "tiny", "stimulus_class", "bacc")
    assert diff.reference == "poyo_ssl_reverse" and diff.n == 3
    assert diff.mean == pytest.approx((poyo - reverse).mean(), abs=1e-12)
    assert diff.relative == pytest.approx(((poyo - reverse) / reverse).mean(), abs=1e-12)
    # The mixed ablation is not in this fixture, so it gets no row; other methods get none.
    assert ("poyo_ssl", "tiny", "poyo_ssl_mixed") not in diffs.rows
    assert not any(r[2] == "poyo_ssl_reverse" for r in diffs.rows if r[0] != "poyo_ssl")
    assert "poyo_ssl_reverse</td>" in html


def test_empty_difference_table_says_why_it_is_empty():
    """A family with no configured task says so; one with tasks but no shared seeds
    says that instead (the scaling sweep runs no forecasting, say)."""
    family = FAMILIES[0]
    no_task = differences_html(DifferenceTable(family, columns=(), rows=()))
    assert "No task of this family was configured" in no_task
    one_column = (("co_smoothing", "bps"),)
    no_pairs = differences_html(DifferenceTable(family, columns=one_column, rows=()))
    assert "No pretrained method shares seeds" in no_pairs


def test_training_curves_run_on_across_fine_tuning_phases():
    """Each phase restarts its step count; plotted steps continue where the last ended."""
    log = pd.DataFrame(
        {"phase": ["unit_id"] * 3 + ["heads"] * 2 + ["full"] * 2, "step": [1, 2, 3, 1, 2, 1, 2]}
    )
    steps, boundaries = run_on_steps(log)
    assert steps.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert boundaries == [(3, "heads"), (5, "full")]
    plain_steps, plain_boundaries = run_on_steps(pd.DataFrame({"step": [1, 2, 3]}))
    assert plain_steps.tolist() == [1, 2, 3] and plain_boundaries == []
