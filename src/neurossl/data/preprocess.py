"""One raw file -> one Session of one modality, whatever the source.

Sources differ only in how a file is read (generic NWB, IBL or Allen layouts); the
writing, validation and atomicity are the same for all, so they live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurossl.data.session import Session, write_session


def read_modality(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    modality: str,
    source: str,
    spike_bin_size: float,
    options: Mapping[str, Any],
) -> Session:
    """Read one modality of one file with the reader its source/layout needs."""
    from neurossl.data.nwb import nwb_to_sessions

    sessions = nwb_to_sessions(
        nwb_path,
        dataset=dataset,
        session=session,
        modalities=[modality],
        spike_bin_size=spike_bin_size,
    )
    return sessions[modality]


def preprocess_to_session(
    *,
    nwb_path: str | Path,
    out_path: str | Path,
    dataset: str,
    session: str,
    modality: str,
    source: str,
    spike_bin_size: float,
    options: Mapping[str, Any],
) -> None:
    """Read and write atomically: a failure leaves no file at ``out_path``."""
    result = read_modality(
        nwb_path,
        dataset=dataset,
        session=session,
        modality=modality,
        source=source,
        spike_bin_size=spike_bin_size,
        options=options,
    )
    write_session(result, out_path)
