"""Layers import only downward: a walk over every import of src/neurossl.

The layers, lowest first (docs/methods.md, "Layers", says why each sits where it does):

- foundation: the vocabulary and table (``names``, ``catalog``), ``hparams``,
  ``config_schema``, ``atomic``, ``job_env``, ``rule_logging``, ``gpu_slots``,
  ``code_version``, ``run`` (the recovery wrapper), ``train_logs`` (the training-log
  file format, which both training and the report read)
- ``device``: the one CPU/CUDA switch (torch only), for every layer that runs torch
- ``data``: sources, readers, the Session contract, splits, windows
- ``contract``: what a stage receives and returns (StageInputs, MetricRow, Evaluation)
- ``train``: the engine, optimiser, checkpoints (generic over any nn.Module)
- ``eval``: metrics and scoring on arrays and files, no model
- ``models``: networks only (no training loop, no metric)
- ``objectives``: losses, masking and the fits that are part of an objective (in the engine)
- ``baselines``: the simple baselines' fitting
- ``methods``: one family per module, combining the layers below
- ``config_checks``: planning-time checks of a config against the data layer's rules
- ``stages``, ``selection``: the entry points rules call; ``cli`` and ``inspect``:
  the ``neurossl`` console script, which reads files through the data layer
- ``report``: reads result files; never imports a model, objective or method
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from neurossl import catalog

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "neurossl"
FOUNDATION = {
    "__init__", "names", "catalog", "hparams", "config_schema", "atomic", "job_env",
    "rule_logging", "gpu_slots", "code_version", "run", "train_logs",
}  # fmt: skip
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "device": set(),
    "data": {"foundation"},
    "contract": {"foundation", "data"},
    "train": {"foundation", "device", "data"},
    "eval": {"foundation", "device", "data", "contract"},
    "models": {"foundation", "device", "data"},
    "objectives": {"foundation", "device", "data", "models", "train", "eval"},
    "baselines": {"foundation", "device", "data", "contract", "eval", "train"},
    "methods": {"foundation", "device", "data", "contract", "train", "eval", "models",
                "objectives", "baselines"},
    "stages": {"foundation", "device", "data", "contract", "train", "eval", "methods"},
    "selection": {"foundation", "methods"},
    "report": {"foundation", "data", "eval"},
    "inspect": {"foundation", "data"},
    "config_checks": {"foundation", "data"},
    "cli": {"foundation", "data", "inspect"},
}  # fmt: skip


def _layer(module: str) -> str:
    """``neurossl.eval.metrics`` -> ``eval``; top-level modules are their own layer."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return "foundation" if top in FOUNDATION else top


def _imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("neurossl")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "neurossl":  # a submodule, or a name defined in __init__
                found += [
                    f"neurossl.{a.name}"
                    if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").exists()
                    else "neurossl"
                    for a in node.names
                ]
            elif name.startswith("neurossl."):
                found.append(name)
    return found


def test_no_module_imports_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        layer = _layer(module)
        assert layer in ALLOWED, f"{module}: place layer {layer!r} in tests/test_layers.py"
        for target in _imports(path):
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                upward.append(f"{module} ({layer}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def test_the_foundation_and_the_planning_path_import_no_torch():
    """The workflow reads these at every start-up; torch would add seconds."""
    heavy = ("torch", "matplotlib", "h5py", "pynwb")
    planning = [PACKAGE / f"{name}.py" for name in FOUNDATION if name != "__init__"]
    planning += [PACKAGE / "methods" / "hparam_models.py", PACKAGE / "methods" / "traits.py",
                 PACKAGE / "methods" / "registry.py"]  # fmt: skip
    for path in planning:
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(str(n).split(".")[0] in heavy for n in names), (path.name, names)


#: Consecutive code lines two method families may not share: what they have in common
#: belongs in a module below them (``methods.task_heads``, ``eval``, ``train``, ...).
SHARED_RUN = 6


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of a module's code, without imports and comments."""
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if len(text) >= 4 and not text.startswith(("#", "import ", "from ", '"""')):
            kept.append((number, text))
    return kept


def test_no_code_is_repeated_across_the_method_families():
    families = sorted({spec.module for spec in catalog.BUILTIN_METHODS})
    where: dict[tuple[str, ...], set[tuple[str, int]]] = defaultdict(set)
    for module in families:
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        lines = _code_lines(path)
        for start in range(len(lines) - SHARED_RUN + 1):
            run = tuple(text for _, text in lines[start : start + SHARED_RUN])
            where[run].add((module, lines[start][0]))
    repeated = [
        f"{sorted(places)}: {run[0]!r} ... {run[-1]!r}"
        for run, places in where.items()
        if len({module for module, _ in places}) > 1
    ]
    assert len(families) >= 4, families
    assert not repeated, "\n".join(repeated)
