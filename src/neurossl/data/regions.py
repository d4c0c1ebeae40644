"""Brain-region labels as Allen CCF acronyms, through iblatlas' copy of the Allen tree.

Files name regions either by acronym ("CA1") or by full Allen name ("Field CA1", as
IBL's converter writes); the Session contract holds acronyms or "unknown". The tree and
IBL's coarser Beryl and Cosmos levels come from ``iblatlas.regions.BrainRegions``, the
mapping IBL's own analyses use, rather than a table of our own.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from neurossl.data.nwb_fields import warn_assumed

#: Levels a label can be mapped to (iblatlas mapping names; "Allen": as the tree has it).
MAPPINGS = ("Allen", "Beryl", "Cosmos")
#: Labels that name no brain region (IBL's converter writes all of these).
NOT_REGIONS = frozenset({"", "root", "void", "out-of-atlas", "unresolved", "unknown"})


@cache
def _atlas() -> tuple[Any, dict[str, str], frozenset[str]]:
    from iblatlas.regions import BrainRegions

    regions = BrainRegions()
    right = regions.id > 0  # the tree once, not its left-hemisphere copy
    pairs = zip(regions.name[right], regions.acronym[right], strict=True)
    names = {str(name).lower(): str(acronym) for name, acronym in pairs}
    return regions, names, frozenset(str(a) for a in regions.acronym[right])


def has_full_names(labels: np.ndarray) -> bool:
    """Whether any label looks like a full name (acronyms never contain a space)."""
    return any(" " in str(label).strip() for label in labels)


def full_names_to_acronyms(labels: np.ndarray) -> np.ndarray:
    """Full Allen names -> acronyms; every other label is kept as the file gives it."""
    _, by_name, _ = _atlas()
    return np.array([by_name.get(str(x).strip().lower(), x) for x in labels], dtype=object)


def allen_acronyms(labels: np.ndarray, mapping: str, path: str | Path, field: str) -> np.ndarray:
    """Allen names or acronyms -> acronyms at ``mapping``'s level; the rest "unknown".

    Labels that are neither an Allen name nor an acronym are logged once (first five).
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"region mapping must be one of {MAPPINGS}, got {mapping!r}")
    regions, by_name, acronyms = _atlas()
    out = np.full(len(labels), "unknown", dtype=object)
    strange: set[str] = set()
    for k, label in enumerate(labels):
        text = str(label).strip()
        if text.lower() in NOT_REGIONS:
            continue
        acronym = by_name.get(text.lower()) or (text if text in acronyms else None)
        if acronym is None:
            strange.add(text)
        else:
            out[k] = acronym
    if strange:
        warn_assumed(
            path, field, f"{sorted(strange)[:5]} are not Allen CCF names or acronyms; unknown"
        )
    known = out != "unknown"
    if mapping != "Allen" and known.any():
        mapped = regions.acronym2acronym(out[known].astype(str), mapping=mapping)
        out[known] = [a if str(a).lower() not in NOT_REGIONS else "unknown" for a in mapped]
    return out
