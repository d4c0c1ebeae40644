"""The report's headline objective x modality matrix: rows from the method table, values
and paired gains against scipy, every cell either a number or a reason, first on the page."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from test_report import DATASET, SEEDS, fixture_config, seed_means, write_fixture

from neurossl import catalog
from neurossl.models.dual_axis import count_parameters
from neurossl.names import FIGURES, MODALITIES
from neurossl.report.build import build_report
from neurossl.report.collect import RunKey
from neurossl.report.figures import objective_matrix_figure
from neurossl.report.matrix import (
    CORE_COLUMNS,
    NOT_RUN,
    Column,
    build_matrix,
    objectives,
)
from neurossl.report.shared_backbone import (
    objective_vs_backbone,
    shared_rows,
)
from neurossl.report.tables import MISSING, NOT_SUPPORTED, OK, seed_values

REPO = Path(__file__).resolve().parents[1]
SPIKE_BPS = Column("spikes", "co_smoothing", "bps")
CALCIUM_MAE = Column("calcium", "forecasting", "mae")
CALCIUM_STIMULUS = Column("calcium", "stimulus_class", "bacc")
TOKENS_PER_STEP = 96.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture's results with poyo_ssl's calcium runs deleted (a missing row)."""
    root = tmp_path_factory.mktemp("matrix")
    inputs = write_fixture(root, fixture_config())
    for seed in SEEDS:
        (root / f"results/{DATASET}/eval/poyo_ssl/calcium/tiny/seed{seed}/metrics.json").unlink()
        # CalM's loss logs the tokens of each step; the fixture's mtm logs do not.
        log = root / f"results/{DATASET}/pretrain/calm/calcium/tiny/seed{seed}/train_log.csv"
        frame = pd.read_csv(log)
        frame.assign(tokens=TOKENS_PER_STEP, seconds=0.5).to_csv(log, index=False)
    report_dir = root / "results" / DATASET / "report"
    collection = build_report(inputs, report_dir)
    per_seed = seed_values(collection.metrics)
    matrix = build_matrix(collection, per_seed, list(MODALITIES), "tiny", 0.95)
    return collection, per_seed, matrix, (report_dir / "index.html").read_text()


def test_rows_are_the_catalog_objectives_without_ablations():
    rows = {o.method: o for o in objectives()}
    assert {"mtm", "poyo_ssl", "calm"} <= set(rows)
    assert not {"poyo_ssl_mixed", "poyo_ssl_reverse"} & set(rows)  # ablations of poyo_ssl
    assert not {"scratch_ndt", "linear", "oracle"} & set(rows)
    # Another family's objective on a shared backbone has its own table.
    assert not {"dual_axis_mtm", "dual_axis_poyo_ssl"} & set(rows)
    for name, row in rows.items():
        spec = catalog.method(name)
        assert (row.objective, row.scratch) == (spec.objective, spec.scratch)


def test_columns_keep_the_core_tasks_and_add_configured_ones(built):
    _, _, matrix, _ = built
    core = [Column(m, t, metric) for m in MODALITIES for t, metric in CORE_COLUMNS[m]]
    assert (
        list(matrix.columns[: len(CORE_COLUMNS["spikes"])]) == core[: len(CORE_COLUMNS["spikes"])]
    )
    assert set(core) <= set(matrix.columns)
    assert CALCIUM_STIMULUS in matrix.columns  # configured, outside the core
    assert CALCIUM_MAE.note == "mean over horizons"
    assert len(matrix.cells) == len(matrix.rows) * len(matrix.columns)  # no cell dropped


def test_cell_mean_ci_and_paired_gain_over_scratch_match_scipy(built):
    _, _, matrix, _ = built
    cell = matrix.cells[("mtm", SPIKE_BPS)]
    values = seed_means("mtm", "tiny", "co_smoothing", "bps")
    lo, hi = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert cell.state == OK and cell.n_seeds == 3
    assert (cell.mean, cell.lo, cell.hi) == pytest.approx((values.mean(), lo, hi), abs=1e-12)
    # scratch_ndt's seed 2 is absent: the gain pairs seeds 0 and 1 only.
    d = seed_means("mtm", "tiny", "co_smoothing", "bps", (0, 1)) - seed_means(
        "scratch_ndt", "tiny", "co_smoothing", "bps", (0, 1)
    )
    assert cell.gain.reference == "scratch_ndt" and cell.gain.n == 2
    assert cell.gain.mean == pytest.approx(d.mean(), abs=1e-12)
    # An error: the gain is the reduction, positive when calm beats its scratch backbone.
    calm = matrix.cells[("calm", CALCIUM_MAE)]
    reduction = seed_means("scratch_dual_axis", "tiny", "forecasting", "mae") - seed_means(
        "calm", "tiny", "forecasting", "mae"
    )
    assert calm.gain.reference == "scratch_dual_axis"
    assert calm.gain.mean == pytest.approx(reduction.mean(), abs=1e-12) and calm.gain.mean > 0


def test_every_cell_without_a_value_says_why(built):
    _, _, matrix, _ = built
    calm_spikes = matrix.cells[("calm", SPIKE_BPS)]
    if "spikes" not in catalog.method("calm").modalities:
        assert calm_spikes.state == NOT_RUN and "pairing" in calm_spikes.reason
    assert matrix.cells[("ndt", SPIKE_BPS)].state == NOT_RUN  # not in the fixture's methods
    inter = matrix.cells[("mtm", Column("spikes", "inter_region", "bps"))]
    assert (inter.state, inter.reason) == (NOT_RUN, "task not configured")
    missing = matrix.cells[("poyo_ssl", CALCIUM_MAE)]
    assert missing.state == MISSING and missing.n_missing == 3
    # Present, but its scratch control never reports the task: a value without a gain.
    calm_stimulus = matrix.cells[("calm", CALCIUM_STIMULUS)]
    assert calm_stimulus.state == OK and calm_stimulus.gain is None
    assert all(c.state in (OK, MISSING, NOT_RUN, NOT_SUPPORTED) for c in matrix.cells.values())


def test_best_objective_per_column_follows_the_metric_direction(built):
    _, _, matrix, _ = built
    for column, pick in ((SPIKE_BPS, max), (CALCIUM_MAE, min)):  # bps up, mae down
        scored = {
            r.method: matrix.cells[(r.method, column)].mean
            for r in matrix.rows
            if matrix.cells[(r.method, column)].state == OK
        }
        assert scored, column
        winner = pick(scored, key=scored.get)
        assert [m for m in scored if matrix.cells[(m, column)].best] == [winner]
    best = [
        (row.method, col) for row in matrix.rows for col in matrix.columns
        if matrix.cells[(row.method, col)].best
    ]  # fmt: skip
    assert len({col for _, col in best}) == len(best)  # one best per column (no ties here)
    assert not any(matrix.cells[(r.method, c)].best for r in matrix.rows for c in matrix.columns
                   if matrix.cells[(r.method, c)].state != OK)  # fmt: skip


class _MatrixCells(HTMLParser):
    """Text of each cell of the table with id ``table_id`` (the headline matrix)."""

    def __init__(self, table_id: str = "objective-matrix") -> None:
        super().__init__()
        self.table_id = table_id
        self.inside, self.depth, self.cells, self.current = False, 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == self.table_id:
            self.inside = True
        if self.inside and tag == "td" and "matrix-cell" in (attrs.get("class") or ""):
            self.current = [attrs.get("data-state"), ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        if tag == "td" and self.current is not None:
            self.cells.append(tuple(self.current))
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current[1] += data


def matrix_cells(html: str, table_id: str = "objective-matrix") -> list[tuple[str, str]]:
    parser = _MatrixCells(table_id)
    parser.feed(html)
    return parser.cells


def test_matrix_is_the_first_table_and_shows_every_cell(built):
    _, _, matrix, html = built
    assert html.index("<table id='objective-matrix'>") == html.index("<table")
    cells = matrix_cells(html)
    assert len(cells) == len(matrix.rows) * len(matrix.columns)
    for state, text in cells:
        words = {"ok": "[", "missing": "missing", "not_run": "not run"}
        assert words.get(state, "not supported") in text, (state, text)
    assert "Δ " in html and "vs scratch_ndt" in html
    section = html[html.index("<h2 id='matrix'>") : html.index("<h2 id='missing'>")]
    assert "id='fig-objective_matrix'" in section
    assert html.count("id='fig-objective_matrix'") == 1


def test_heatmap_marks_gains_and_names_absent_cells(built):
    _, _, matrix, _ = built
    fig = objective_matrix_figure(matrix)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == len(matrix.rows) * len(matrix.columns)
    assert "missing" in texts and "not run" in texts and "no scratch pair" in texts
    calm = matrix.cells[("calm", CALCIUM_MAE)].gain
    assert any(t.startswith(f"{calm.mean:+.3g}*") for t in texts)  # CI above 0


def test_heatmap_is_a_workflow_report_figure_with_a_caption():
    assert FIGURES[0] == "objective_matrix"
    caption = REPO / "workflow/report/report_objective_matrix.rst"
    assert "scratch" in caption.read_text()
    smk = (REPO / "workflow/rules/benchmark_report.smk").read_text()
    assert 'caption=f"../report/report_{name}.rst"' in smk and "for name in FIGURES" in smk


def test_a_new_pairing_fills_its_cells_without_report_changes(built, monkeypatch):
    """CalM gaining spikes in the table is enough for its spiking cells to show values."""
    collection, per_seed, _, _ = built
    monkeypatch.setitem(
        catalog._methods, "calm", dataclasses.replace(catalog.method("calm"), modalities=MODALITIES)
    )
    rows = []
    for method, shift in (("calm", 0.3), ("scratch_dual_axis", 0.1)):
        for seed in SEEDS:
            rows.append(dict(method=method, modality="spikes", size="tiny",
                             task="co_smoothing", metric="bps", seed=seed,
                             value=shift + 0.01 * seed))  # fmt: skip
    extended = pd.concat([per_seed, pd.DataFrame(rows)], ignore_index=True)
    expected = collection.expected + tuple(
        RunKey(m, "spikes", "tiny", s) for m in ("calm", "scratch_dual_axis") for s in SEEDS
    )
    grown = dataclasses.replace(collection, expected=expected)
    matrix = build_matrix(grown, extended, list(MODALITIES), "tiny", 0.95)
    cell = matrix.cells[("calm", SPIKE_BPS)]
    assert cell.state == OK and cell.gain.mean == pytest.approx(0.2)
    # Its other configured spiking columns are now run: a value or "not supported", never
    # "not run" and never empty.
    choice = matrix.cells[("calm", Column("spikes", "choice", "bacc"))]
    assert choice.state in (OK, NOT_SUPPORTED)


def test_pretraining_budget_sums_logged_tokens_and_estimates_flops(built):
    _, _, _, html = built
    section = html[html.index("<table id='budget-table'>") :].split("</table>")[0]
    cells = [r.split("</td>") for r in section.split("<tr>")[2:]]
    rows = {(c[0].split(">")[-1], c[1].split(">")[-1]): "</td>".join(c) for c in cells}
    # The methods the fixture has pretraining logs for, on each modality it runs them on.
    assert {method for method, _ in rows} == {"mtm", "calm"}
    tokens = 20 * TOKENS_PER_STEP  # 20 logged steps
    flops = 6 * count_parameters("tiny") * tokens
    calm = rows[("calm", "calcium")]
    assert f"<td>{tokens:.3g}</td>" in calm and f"<td>{flops:.3e}</td>" in calm
    assert "not logged" in rows[("mtm", "spikes")]  # no tokens column: shown, never guessed
    assert html.index("id='objective-matrix'") < html.index("id='budget-table'")


SHARED_METHODS = ("calm", "dual_axis_mtm", "dual_axis_poyo_ssl", "scratch_dual_axis")


def test_shared_backbone_rows_are_the_dual_axis_objectives_and_their_control():
    rows = shared_rows()
    assert [r.method for r in rows] == list(SHARED_METHODS)
    assert [r.control for r in rows] == [False, False, False, True]
    assert {r.scratch for r in rows[:3]} == {"scratch_dual_axis"}
    backbones = {catalog.method(r.method).backbone for r in rows}
    assert backbones == {"neurossl.models.dual_axis"}
    assert [catalog.method(r.method).objective_of for r in rows[:3]] == [None, "mtm", "poyo_ssl"]


def test_shared_backbone_table_follows_the_matrix_and_says_why_cells_are_empty(built):
    collection, per_seed, matrix, html = built
    order = [html.index(f"<table id='{t}'>")
             for t in ("objective-matrix", "shared-backbone-table", "budget-table")]  # fmt: skip
    assert order == sorted(order)
    shared = build_matrix(collection, per_seed, list(MODALITIES), "tiny", 0.95, rows=shared_rows())
    assert shared.columns == matrix.columns  # the same columns, cell for cell
    cells = matrix_cells(html, "shared-backbone-table")
    assert len(cells) == len(shared.rows) * len(shared.columns)
    for state, text in cells:
        words = {"ok": "[", "missing": "missing", "not_run": "not run"}
        assert words.get(state, "not supported") in text, (state, text)
    # The fixture config does not run the borrowed objectives: said, not dropped.
    cell = shared.cells[("dual_axis_mtm", CALCIUM_MAE)]
    assert (cell.state, cell.reason) == (NOT_RUN, "not in this config's methods/sizes")
    # The scratch row is a control: a value, no gain against itself, never "best".
    control = shared.cells[("scratch_dual_axis", CALCIUM_MAE)]
    assert control.state == OK and control.gain is None and not control.best
    # calm's cell is the matrix's (the best mark is per table).
    same = dataclasses.replace(shared.cells[("calm", CALCIUM_MAE)], best=False)
    assert same == dataclasses.replace(matrix.cells[("calm", CALCIUM_MAE)], best=False)
    section = html[html.index("<h2 id='shared-backbone'>") : html.index("<h2 id='missing'>")]
    assert "Not compared" in section and "calcium forecasting (mae)" in section


def test_objective_spread_on_the_shared_backbone_beside_the_own_backbones(built):
    """With the borrowed objectives run, each column compares the gap between objectives
    on one backbone with the gap between the same objectives on their own backbones."""
    collection, per_seed, _, _ = built
    rows = []
    for method, shift in (("dual_axis_mtm", 0.02), ("dual_axis_poyo_ssl", -0.01)):
        calm = per_seed[(per_seed["method"] == "calm") & (per_seed["metric"] == "mae")
                        & (per_seed["task"] == "forecasting")]  # fmt: skip
        rows.append(calm.assign(method=method, value=calm["value"] + shift))
    extended = pd.concat([per_seed, *rows], ignore_index=True)
    expected = collection.expected + tuple(
        RunKey(m, "calcium", "tiny", s) for m in ("dual_axis_mtm", "dual_axis_poyo_ssl")
        for s in SEEDS
    )  # fmt: skip
    grown = dataclasses.replace(collection, expected=expected)
    shared = build_matrix(grown, extended, list(MODALITIES), "tiny", 0.95, rows=shared_rows())
    own = build_matrix(grown, extended, list(MODALITIES), "tiny", 0.95)
    cell = shared.cells[("dual_axis_poyo_ssl", CALCIUM_MAE)]
    assert cell.state == OK and cell.best  # lowest mae of the three objectives
    assert cell.gain.reference == "scratch_dual_axis"
    spread = {s.column: s for s in objective_vs_backbone(shared, own)}[CALCIUM_MAE]
    # poyo_ssl's own calcium runs are missing in the fixture: compared over calm and mtm.
    assert spread.objectives == ("calm", "mtm") and spread.compared
    assert spread.shared == pytest.approx(0.02, abs=1e-12)
    own_gap = abs(own.cells[("calm", CALCIUM_MAE)].mean - own.cells[("mtm", CALCIUM_MAE)].mean)
    assert spread.own == pytest.approx(own_gap, abs=1e-12)
    assert spread.shared_best == "calm"
    text = spread.sentence()
    assert f"{spread.shared:.3g}" in text and f"{spread.own:.3g}" in text and "%" in text
    stimulus = {s.column: s for s in objective_vs_backbone(shared, own)}[CALCIUM_STIMULUS]
    assert not stimulus.compared  # only calm has a value in both tables
