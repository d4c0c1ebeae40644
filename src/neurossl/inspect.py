"""What neurossl would take from an NWB file, before a config is written.

For each modality the file is read by the generic reader the workflow uses for
``source: local``, and, for each dataset of a given config that names a layout reader
(``ibl:`` / ``allen:`` blocks) or gives the generic reader options (``nwb:``, e.g. which
calcium series to take), by that reader with the dataset's options: the same
:func:`neurossl.data.preprocess.read_modality` the preprocess jobs call. Every warning a
reader emits is captured, and each resulting Session is summarised: neurons and regions,
grid, trials and their columns, behaviour channels, the calcium series taken, and which
tasks of the vocabulary it can serve, with the labels each would get. A Session a reader
cannot give shows that reader's error. With a config, the configured tasks the file
cannot serve are listed per dataset. Nothing is written.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurossl.data.preprocess import read_modality, reader_of
from neurossl.data.session import Session
from neurossl.data.sources.dandi import asset_session_id
from neurossl.names import BEHAVIOR_PREFIX, FIXED_TASKS, MODALITIES, STIMULUS_PREFIX

#: Trial columns that are the window's timing, not labels.
TIMING_COLUMNS = ("start", "stop", "align")
#: Label classes shown per task (the rest are counted).
MAX_CLASSES = 8
DEFAULT_BIN_SIZE = 0.02


@dataclass
class TaskCheck:
    task: str
    ok: bool
    why: str
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class ModalityReport:
    modality: str
    reader: str = "nwb"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tasks: list[TaskCheck] = field(default_factory=list)
    session: Session | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class FileReport:
    path: str
    session: str
    nwb_version: str
    #: Generic reader under the modality's name; a layout reader under "<dataset>/<modality>".
    modalities: dict[str, ModalityReport]
    calcium_candidates: list[dict[str, Any]]
    #: {dataset: {modality: [(task, why)]}} for configured tasks the file cannot serve.
    unserved: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)

    @property
    def readable(self) -> bool:
        return any(m.ok for m in self.modalities.values())


def inspect_file(
    path: str | Path,
    *,
    spike_bin_size: float | None = None,
    config: Mapping[str, Any] | None = None,
) -> FileReport:
    """Read ``path`` as ``source: local`` would; ``spike_bin_size`` defaults to the config's."""
    path = Path(path)
    session = asset_session_id(path.name)
    version, candidates = _probe(path)
    bin_size = spike_bin_size if spike_bin_size is not None else _bin_size(config)
    reports = {m: _inspect_modality(path, session, m, "nwb", bin_size, {}) for m in MODALITIES}
    for dataset, spec in (config or {}).get("datasets", {}).items():
        reader = reader_of(spec)
        options = spec.get(reader) or {}
        if reader == "nwb" and not options:
            continue  # the generic report above is what this dataset reads
        size = spec.get("preprocess", {}).get("spike_bin_size", bin_size)
        for modality in spec.get("modalities", []):
            reports[f"{dataset}/{modality}"] = _inspect_modality(
                path, session, modality, reader, size, options
            )
    if candidates:
        reports["calcium"].summary["series"] = _chosen_series(path, reports["calcium"], candidates)
    report = FileReport(str(path), session, version, reports, candidates)
    if config is not None:
        report.unserved = unserved_tasks(report, config)
    return report


def _bin_size(config: Mapping[str, Any] | None) -> float:
    """The spike bin size of the config's datasets when they agree on one, else MtM's."""
    sizes = {
        spec.get("preprocess", {}).get("spike_bin_size")
        for spec in (config or {}).get("datasets", {}).values()
    } - {None}
    return float(sizes.pop()) if len(sizes) == 1 else DEFAULT_BIN_SIZE


@contextmanager
def _captured() -> Iterator[list[str]]:
    """Every warning emitted inside, through ``logging`` or ``warnings``, in order, once."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        root.removeHandler(handler)
    unique = list(dict.fromkeys(messages))
    messages[:] = unique


def _inspect_modality(
    path: Path,
    session: str,
    modality: str,
    reader: str,
    bin_size: float,
    options: Mapping[str, Any],
) -> ModalityReport:
    report = ModalityReport(modality, reader)
    with _captured() as messages:
        try:
            result = read_modality(
                path,
                dataset="inspect",
                session=session,
                modality=modality,
                reader=reader,
                spike_bin_size=bin_size,
                options=options,
            )
        except Exception as err:  # every reader failure is reported, not raised
            report.error = f"{type(err).__name__}: {err}"
            result = None
    report.warnings = messages
    report.session = result
    if result is not None:
        report.summary = summarise(result)
        report.tasks = task_checks(result)
    return report


def summarise(session: Session) -> dict[str, Any]:
    regions = Counter(str(r) for r in session.neurons["region"])
    trials = session.trials
    standard = {"dataset", "session", "source_path", "source_sha256", "software_version"}
    return {
        "n_neurons": session.n_neurons,
        "n_bins": session.n_bins,
        "bin_size": session.bin_size,
        "t0": session.t0,
        "duration": session.n_bins * session.bin_size,
        "subject": session.meta.get("subject"),
        "regions": dict(regions.most_common()),
        "depth_known": int(np.isfinite(session.neurons["depth"].to_numpy(float)).sum()),
        "n_trials": len(trials),
        "trial_columns": [c for c in trials.columns if c not in TIMING_COLUMNS],
        "behavior": list(session.behavior_names),
        "provenance": {k: v for k, v in session.meta.items() if k not in standard},
    }


def candidate_tasks(session: Session) -> list[str]:
    """The vocabulary's tasks worth checking for this Session."""
    tasks = list(FIXED_TASKS)
    for column in session.trials.columns:
        if column not in TIMING_COLUMNS and column != "choice":
            name = column if column.startswith(STIMULUS_PREFIX) else STIMULUS_PREFIX + column
            tasks.append(name)
    tasks += [BEHAVIOR_PREFIX + name for name in session.behavior_names]
    return list(dict.fromkeys(tasks))


def task_checks(session: Session, tasks: Sequence[str] | None = None) -> list[TaskCheck]:
    return [check_task(session, t) for t in (tasks or candidate_tasks(session))]


def label_column(task: str, columns: Sequence[str]) -> str | None:
    """The trial column holding a window-label task's target.

    Same convention as ``neurossl.methods.task_heads.label_keys`` (``choice`` -> ``choice``;
    ``stimulus_<v>`` -> ``stimulus_<v>``, else ``<v>``), not imported from there because
    that module loads torch, seconds a command-line look at a file should not pay.
    """
    keys = (task,) if task == "choice" else (task, task.removeprefix(STIMULUS_PREFIX))
    return next((k for k in keys if k in columns), None)


def check_task(session: Session, task: str) -> TaskCheck:
    """Whether the Session has what ``task`` reads (the jobs' own checks stay the authority)."""
    regions = session.neurons["region"].astype(str)
    known = regions[regions != "unknown"]
    if task == "co_smoothing":
        ok = session.n_neurons >= 2
        return TaskCheck(task, ok, f"{session.n_neurons} neurons (held-in/held-out needs 2+)")
    if task == "forecasting":
        return TaskCheck(task, session.n_bins >= 2, f"{session.n_bins} time bins")
    if task == "inter_region":
        n = known.nunique()
        return TaskCheck(task, n >= 2, f"{n} known region(s) (needs 2+)")
    if task == "intra_region":
        n = int((known.value_counts() >= 2).sum())
        return TaskCheck(task, n >= 1, f"{n} known region(s) with 2+ neurons (needs 1+)")
    if task.startswith(BEHAVIOR_PREFIX):
        variable = task.removeprefix(BEHAVIOR_PREFIX)
        if variable not in session.behavior_names:
            return TaskCheck(
                task, False, f"no behaviour variable {variable!r}; has {session.behavior_names}"
            )
        values = session.behavior[:, session.behavior_names.index(variable)]
        finite = float(np.isfinite(values).mean())
        return TaskCheck(task, finite > 0, f"behaviour {variable!r}, {finite:.0%} of bins")
    if task == "choice" or task.startswith(STIMULUS_PREFIX):
        trial_columns = [c for c in session.trials.columns if c not in TIMING_COLUMNS]
        column = label_column(task, trial_columns)
        if column is None:
            return TaskCheck(task, False, f"no trial column for it; trial columns {trial_columns}")
        values = session.trials[column]
        counts = Counter(str(v) for v in values if not _missing(v))
        labels = dict(counts.most_common(MAX_CLASSES))
        if len(counts) > MAX_CLASSES:
            labels["..."] = sum(counts.values()) - sum(labels.values())
        ok = len(counts) >= 2
        why = f"trial column {column!r}: {len(counts)} classes over {sum(counts.values())} trials"
        return TaskCheck(task, ok, why + ("" if ok else " (needs 2+ classes)"), labels)
    return TaskCheck(task, False, "not a task of the vocabulary")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def unserved_tasks(
    report: FileReport, config: Mapping[str, Any]
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """{dataset: {modality: [(task, why)]}} of configured tasks this file cannot serve."""
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for dataset, spec in config.get("datasets", {}).items():
        for modality in spec.get("modalities", []):
            wanted = spec.get("tasks", {}).get(modality, [])
            result = report.modalities.get(f"{dataset}/{modality}") or report.modalities.get(
                modality
            )
            if result is None or not result.ok:
                why = result.error if result is not None else f"unknown modality {modality!r}"
                missing = [(t, f"no {modality} Session: {why}") for t in wanted]
            else:
                checks = {c.task: c for c in result.tasks}
                missing = []
                for task in wanted:
                    check = checks.get(task) or _recheck(result, task)
                    if not check.ok:
                        missing.append((task, check.why))
            if missing:
                out.setdefault(dataset, {})[modality] = missing
    return out


def _recheck(result: ModalityReport, task: str) -> TaskCheck:
    """A configured task not among the candidates: the Session lacks what it names."""
    if task.startswith(BEHAVIOR_PREFIX):
        names = result.summary["behavior"]
        return TaskCheck(task, False, f"no behaviour variable; has {names}")
    if task == "choice" or task.startswith(STIMULUS_PREFIX):
        columns = result.summary["trial_columns"]
        return TaskCheck(task, False, f"no trial column for it; trial columns {columns}")
    return TaskCheck(task, False, "not a task of the vocabulary")


# --- calcium series: what the file offers and which one the Session holds ----------------


def _probe(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(NWB version, ophys response series) read with h5py, so a file pynwb refuses is shown."""
    try:
        with h5py.File(path, "r") as f:
            # shown only; the reader decides what it accepts (NWB 1.x kept a root dataset)
            version = f.attrs.get("nwb_version")
            if version is None and isinstance(f.get("nwb_version"), h5py.Dataset):
                version = f["nwb_version"][()]
            version = version.decode() if isinstance(version, bytes) else str(version)
            return version, _response_series(f)
    except OSError:
        return "unreadable", []


def _response_series(f: h5py.File) -> list[dict[str, Any]]:
    found = []
    processing = f.get("processing")
    for module_name, module in (processing or {}).items():
        for container_name, container in module.items():
            kind = _attr(container, "neurodata_type")
            if kind not in ("DfOverF", "Fluorescence") or not isinstance(container, h5py.Group):
                continue
            for series_name, series in container.items():
                if not isinstance(series, h5py.Group) or "data" not in series:
                    continue
                found.append(
                    {
                        "path": f"processing/{module_name}/{container_name}/{series_name}",
                        "container": kind,
                        "name": series_name,
                        "shape": list(series["data"].shape),
                        "rois": int(series["rois"].shape[0]) if "rois" in series else None,
                        "timing": "timestamps" if "timestamps" in series else "rate",
                    }
                )
    return found


def _attr(obj: h5py.HLObject, name: str) -> str:
    value = obj.attrs.get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _chosen_series(path: Path, report: ModalityReport, candidates: list[dict[str, Any]]) -> str:
    """Which candidate the Session's traces are, by comparing values: the reader decides."""
    if not report.ok:
        return "none (the calcium Session was refused)"
    provenance = report.summary.get("provenance", {})
    named = [str(v) for k, v in provenance.items() if k.startswith("calcium") and v]
    if named:  # the reader recorded what it took and how
        return "; ".join(named)
    activity = report.session.activity
    with h5py.File(path, "r") as f:
        for candidate in candidates:
            data = np.asarray(f[candidate["path"]]["data"][:], dtype=np.float32)
            for traces, how in ((data, "as stored"), (data.T, "transposed")):
                if traces.shape == activity.shape and np.allclose(traces, activity):
                    return f"{candidate['path']} [{candidate['container']}], {how}"
    return "computed from the series above (see the warnings for how)"


# --- text rendering ----------------------------------------------------------------------


def render(report: FileReport, config_name: str | None = None) -> str:
    lines = [f"== {report.path}", f"   session id {report.session!r}, NWB {report.nwb_version}"]
    for key, result in report.modalities.items():
        lines += _render_modality(key, result)
    if report.calcium_candidates:
        lines.append("calcium series in the file:")
        for c in report.calcium_candidates:
            lines.append(
                f"  {c['path']}  [{c['container']}] data {tuple(c['shape'])}, "
                f"{c['rois']} ROIs, {c['timing']}"
            )
        lines.append(f"  taken: {report.modalities['calcium'].summary.get('series', 'none')}")
    if config_name is not None:
        if not report.unserved:
            lines.append(f"every task configured in {config_name} can be served")
        for dataset, by_modality in report.unserved.items():
            for modality, missing in by_modality.items():
                lines.append(f"{config_name}: dataset {dataset!r}, {modality}: cannot serve")
                by_reason: dict[str, list[str]] = {}
                for task, why in missing:
                    by_reason.setdefault(why, []).append(task)
                lines += [f"  {', '.join(tasks)}: {why}" for why, tasks in by_reason.items()]
    return "\n".join(lines)


def _render_modality(key: str, result: ModalityReport) -> list[str]:
    title = key if result.reader == "nwb" else f"{key} ({result.reader} reader)"
    if not result.ok:
        lines = [f"{title}: no Session: {result.error}"]
    else:
        s = result.summary
        lines = [
            f"{title}: Session of {s['n_neurons']} neurons x {s['n_bins']} bins of "
            f"{s['bin_size']:.4g} s from t0 = {s['t0']:.4g} s ({s['duration']:.1f} s), "
            f"subject {s['subject']!r}",
            "  regions: " + ", ".join(f"{r} ({n})" for r, n in s["regions"].items()),
            f"  depth known for {s['depth_known']} of {s['n_neurons']} neurons",
            f"  trials: {s['n_trials']}"
            + (f", label columns {s['trial_columns']}" if s["trial_columns"] else ""),
            f"  behaviour: {s['behavior'] or 'none'}",
        ]
        lines += [f"  provenance {k}: {v}" for k, v in s["provenance"].items() if k != "subject"]
        lines.append("  tasks:")
        for check in result.tasks:
            mark = "yes" if check.ok else "no "
            labels = f"  labels {check.labels}" if check.labels else ""
            lines.append(f"    {mark} {check.task}: {check.why}{labels}")
    if result.warnings:
        lines.append("  warnings:")
        lines += [f"    {w}" for w in result.warnings]
    return lines
