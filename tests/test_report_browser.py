"""The report in a real browser: headless Debian Chromium renders every table and image.

A probe script is injected into a *copy* of the page (the report itself has no script):
on load it writes into the title how many images decoded (naturalWidth > 0), how many
tables exist, and every window error or failed resource load; ``--dump-dom`` returns the
DOM after the load event. A deliberately broken page checks that the probe can fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import DATASET, fixture_config, write_fixture

from neurossl.report.build import build_report

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? "resource " + t.tagName : String(e.message));
}, true);
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.title = "PROBE images=" + imgs.length + " broken=" + broken.length +
    " tables=" + document.querySelectorAll("table").length +
    " errors=" + window.__errors.length + " [" + window.__errors.join("|") + "]";
});
</script>"""
PROBE_RESULT = re.compile(
    r"<title>PROBE images=(\d+) broken=(\d+) tables=(\d+) errors=(\d+) \[(.*?)\]</title>"
)


def chromium() -> str:
    """Path of Debian's chromium, installing it when possible (root + apt-get)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get install needs root on Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(command)}): {result.stderr[-500:]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed no chromium binary")


def run_chromium(binary: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def probe(binary: str, page: Path) -> tuple[dict[str, int], str, str]:
    """Counts from the injected probe, its error list, and chromium's stderr."""
    probed = page.with_name(f"probed_{page.name}")
    probed.write_text(page.read_text().replace("<head>", f"<head>{PROBE}", 1))
    result = run_chromium(binary, probed, "--dump-dom")
    match = PROBE_RESULT.search(result.stdout)
    assert match, f"probe did not run; chromium stderr:\n{result.stderr[-2000:]}"
    counts = dict(
        zip(("images", "broken", "tables", "errors"), map(int, match.groups()[:4]), strict=True)
    )
    return counts, match.group(5), result.stderr


@pytest.fixture(scope="module")
def browser():
    return chromium()


def test_report_renders_every_table_and_image(browser, tmp_path):
    inputs = write_fixture(tmp_path, fixture_config())
    report_dir = tmp_path / "results" / DATASET / "report"
    build_report(inputs, report_dir)
    page = report_dir / "index.html"
    html = page.read_text()
    counts, errors, stderr = probe(browser, page)
    assert counts["images"] == html.count("<img ") and counts["images"] >= 6
    assert counts["broken"] == 0, errors
    assert counts["tables"] == html.count("<table") and counts["tables"] >= 8
    assert counts["errors"] == 0, errors
    assert "Uncaught" not in stderr and ":ERROR:CONSOLE" not in stderr

    screenshot = tmp_path / "report.png"
    run_chromium(browser, page, f"--screenshot={screenshot}", "--window-size=1280,3000")
    assert screenshot.read_bytes()[:4] == b"\x89PNG"
    keep = os.environ.get("NEUROSSL_REPORT_SCREENSHOT")
    if keep:  # for looking at it: NEUROSSL_REPORT_SCREENSHOT=/tmp/report.png pytest ...
        shutil.copy(screenshot, keep)


def test_probe_detects_a_broken_image_and_a_script_error(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body><table></table>"
        "<img src='data:image/png;base64,AAAA'><script>undefinedFunction();</script>"
        "</body></html>"
    )
    counts, errors, _ = probe(browser, page)
    assert counts["images"] == 1 and counts["broken"] == 1
    assert counts["errors"] >= 2 and "undefinedFunction" in errors


MATRIX_PROBE = """<script>
window.addEventListener("load", function () {
  var table = document.getElementById("objective-matrix");
  var cells = table ? table.querySelectorAll("td.matrix-cell") : [];
  var blank = Array.prototype.filter.call(cells, function (c) {
    var text = c.innerText.trim();
    var state = c.getAttribute("data-state");
    var says = {ok: "[", missing: "missing", not_run: "not run", not_supported: "not supported"};
    return !text || text.indexOf(says[state]) < 0 || c.offsetWidth === 0;
  });
  var first = document.querySelector("table") === table;
  document.title = "MATRIX cells=" + cells.length + " blank=" + blank.length +
    " first=" + first + " rows=" + (table ? table.rows.length - 1 : -1);
});
</script>"""
MATRIX_RESULT = re.compile(
    r"<title>MATRIX cells=(\d+) blank=(\d+) first=(\w+) rows=(-?\d+)</title>"
)


def test_objective_matrix_renders_with_every_cell_present_or_named_missing(browser, tmp_path):
    """The headline table, as a browser lays it out: first on the page, one visible cell
    per objective and column, each a value or the words saying why there is none."""
    from test_report_matrix import matrix_cells

    inputs = write_fixture(tmp_path, fixture_config())
    for seed in (0, 1, 2):  # a missing objective cell as well as not-run ones
        (
            tmp_path / f"results/{DATASET}/eval/poyo_ssl/calcium/tiny/seed{seed}/metrics.json"
        ).unlink()
    report_dir = tmp_path / "results" / DATASET / "report"
    build_report(inputs, report_dir)
    page = report_dir / "index.html"
    html = page.read_text()
    expected = matrix_cells(html)
    states = {state for state, _ in expected}
    assert {"ok", "missing", "not_run"} <= states
    probed = page.with_name("matrix_probe.html")
    probed.write_text(html.replace("<head>", f"<head>{MATRIX_PROBE}", 1))
    result = run_chromium(browser, probed, "--dump-dom")
    match = MATRIX_RESULT.search(result.stdout)
    assert match, f"probe did not run; chromium stderr:\n{result.stderr[-2000:]}"
    cells, blank, first, rows = match.groups()
    assert int(cells) == len(expected) > 0
    assert int(blank) == 0 and first == "true"
    assert int(rows) == html[html.index("<table id='objective-matrix'>") :].split("</table>")[
        0
    ].count("<tr><td")


def test_shared_backbone_table_renders_every_cell_after_the_matrix(browser, tmp_path):
    """The second table (objectives on one backbone), as a browser lays it out: one
    visible cell per row and column, a value or the words saying why there is none."""
    from test_report_matrix import matrix_cells

    inputs = write_fixture(tmp_path, fixture_config())
    report_dir = tmp_path / "results" / DATASET / "report"
    build_report(inputs, report_dir)
    page = report_dir / "index.html"
    html = page.read_text()
    table = "shared-backbone-table"
    expected = matrix_cells(html, table)
    assert {state for state, _ in expected} >= {"ok", "not_run"}
    assert html.index("<table id='objective-matrix'>") < html.index(f"<table id='{table}'>")
    probed = page.with_name("shared_probe.html")
    probe_script = MATRIX_PROBE.replace('"objective-matrix"', f'"{table}"')
    probed.write_text(html.replace("<head>", f"<head>{probe_script}", 1))
    result = run_chromium(browser, probed, "--dump-dom")
    match = MATRIX_RESULT.search(result.stdout)
    assert match, f"probe did not run; chromium stderr:\n{result.stderr[-2000:]}"
    cells, blank, first, rows = match.groups()
    assert int(cells) == len(expected) > 0
    assert int(blank) == 0 and first == "false"
    assert int(rows) == 4  # calm, dual_axis_mtm, dual_axis_poyo_ssl, scratch_dual_axis
