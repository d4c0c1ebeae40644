"""The conda env of the rules pins the same packages and ranges as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml

from workflow_helpers import REPO

#: PyPI name -> conda-forge name where they differ.
CONDA_NAMES = {"torch": "pytorch", "pyyaml": "pyyaml"}


def _split(spec: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    assert match, spec
    return match.group(1).lower(), match.group(2).replace(" ", "")


def test_conda_env_matches_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(s) for s in project["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "neurossl.yaml").read_text())
    listed = dict(_split(s) for s in env["dependencies"] if isinstance(s, str))
    pip_only = [s for d in env["dependencies"] if isinstance(d, dict) for s in d.get("pip", [])]
    listed |= dict(_split(s) for s in pip_only if not s.startswith(("-", ".")))
    for name, spec in wanted.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in listed, (
            f"envs/neurossl.yaml lacks {conda_name} (pyproject: {name}{spec})"
        )
        assert listed[conda_name] == spec, (
            f"{conda_name}: env has {listed[conda_name]!r}, pyproject {spec!r}"
        )
    # Packages whose exact pins would clash are installed --no-deps, their dependencies
    # declared in pyproject.toml (Makefile); the env lists them the same way.
    no_deps = set(re.findall(r"--no-deps '([A-Za-z0-9_.\-]+)==", (REPO / "Makefile").read_text()))
    extra = set(listed) - {CONDA_NAMES.get(n, n) for n in wanted} - {"python", "pip"} - no_deps
    assert not extra, f"envs/neurossl.yaml lists packages pyproject.toml does not: {sorted(extra)}"


def test_every_rule_names_the_conda_env():
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rules.read_text()
        n_rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, flags=re.M))
        n_conda = text.count('conda:\n        "../../envs/neurossl.yaml"')
        assert n_conda == n_rules, f"{rules.name}: {n_rules} rules but {n_conda} conda directives"
