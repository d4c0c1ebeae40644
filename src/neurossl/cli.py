"""The ``neurossl`` command: ``neurossl inspect FILE...``.

``inspect`` shows, for each NWB file, what the generic reader (``source: local``) would
take and which tasks it could serve, so users can check their files before writing a
config. Exit status 0 when every file gives a Session of at least one modality (and,
with ``--config``, can serve every configured task), 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="neurossl",
        description="neurossl command-line tools (the workflow runs with snakemake)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="what neurossl would read from NWB files, and which tasks they serve",
        description="For each NWB file: the Session each reader would give (neurons, regions, "
        "trials, labels, behaviour, calcium series), its warnings, and the tasks it can serve.",
        epilog="Exit status: 0 when every file gives a Session of at least one modality (and "
        "serves every configured task), 1 otherwise, 2 for a missing file or config.",
    )
    inspect.add_argument("files", nargs="+", type=Path, metavar="FILE")
    inspect.add_argument(
        "--config",
        type=Path,
        help="a workflow config: list the configured tasks a file cannot serve",
    )
    inspect.add_argument(
        "--bin-size",
        type=float,
        default=None,
        help="spike bin size in seconds (default: the config's, else 0.02)",
    )
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    return _inspect(args.files, args.config, args.bin_size, args.json)


def _inspect(
    files: Sequence[Path], config_path: Path | None, bin_size: float | None, as_json: bool
) -> int:
    from neurossl.inspect import inspect_file, render  # after argument errors: imports are slow

    config = None
    if config_path is not None:
        if not config_path.is_file():
            print(f"neurossl inspect: --config {config_path}: no such file", file=sys.stderr)
            return 2
        config = yaml.safe_load(config_path.read_text()) or {}
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"neurossl inspect: no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    reports = [inspect_file(f, spike_bin_size=bin_size, config=config) for f in files]
    if as_json:
        print(json.dumps([_jsonable(r) for r in reports], indent=1, default=str))
    else:
        name = str(config_path) if config_path is not None else None
        print("\n\n".join(render(r, name) for r in reports))
    ok = all(r.readable and not r.unserved for r in reports)
    return 0 if ok else 1


def _jsonable(report: object) -> dict:
    data = dataclasses.asdict(report)
    for modality in data["modalities"].values():
        modality.pop("session", None)
    return data


if __name__ == "__main__":
    sys.exit(main())
