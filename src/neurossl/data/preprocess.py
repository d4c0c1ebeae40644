"""One raw file -> one Session of one modality, whatever the source.

Sources differ only in how a file is read (generic NWB, IBL or Allen layouts); the
writing, validation and atomicity are the same for all, so they live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurossl.data.session import Session, write_session

#: Layout-specific readers; "nwb" is the generic reader for any NWB with Units / ophys.
READERS = ("nwb", "ibl", "allen", "nlb")
READER_MODALITY = {"ibl": "spikes", "allen": "calcium", "nlb": "spikes"}


def reader_of(dataset_spec: Mapping[str, Any]) -> str:
    """The reader a dataset needs: a layout block (``ibl:`` / ``allen:`` / ``nlb:``) selects it.

    The generic reader takes its options from the dataset's ``nwb:`` block.
    """
    layouts = [name for name in ("ibl", "allen", "nlb") if name in dataset_spec]
    if len(layouts) > 1:
        raise ValueError(f"a dataset can use one layout reader, got blocks {layouts}")
    return layouts[0] if layouts else "nwb"


def read_modality(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    modality: str,
    reader: str,
    spike_bin_size: float,
    options: Mapping[str, Any],
    source_sha256: str | None = None,
) -> Session:
    """Read one modality of one file with the reader its layout needs.

    ``source_sha256``: the file's SHA-256 if already known (e.g. from the download
    manifest), so the generic reader does not hash the file again; the layout readers
    hash it themselves.
    """
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; expected one of {READERS}")
    if reader in READER_MODALITY and modality != READER_MODALITY[reader]:
        raise ValueError(
            f"the {reader} reader yields {READER_MODALITY[reader]} Sessions, not {modality}; "
            f"set the dataset's modalities to [{READER_MODALITY[reader]}]"
        )
    if reader == "ibl":
        from neurossl.data.sources.ibl import IBLOptions, read_ibl_session

        return read_ibl_session(
            nwb_path,
            dataset=dataset,
            session=session,
            spike_bin_size=spike_bin_size,
            options=IBLOptions.from_dict(options),
            source_sha256=source_sha256,
        )
    if reader == "nlb":
        from neurossl.data.sources.nlb import NLBOptions, read_nlb_session

        return read_nlb_session(
            nwb_path,
            dataset=dataset,
            session=session,
            spike_bin_size=spike_bin_size,
            options=NLBOptions.from_dict(options),
            source_sha256=source_sha256,
        )
    if reader == "allen":
        from neurossl.data.sources.allen import read_allen_session

        return read_allen_session(nwb_path, dataset=dataset, session=session, options=options)
    from neurossl.data.nwb import nwb_to_sessions

    unknown = sorted(set(options) - {"calcium_series"})
    if unknown:
        raise ValueError(f"nwb: unknown key(s) {unknown}; expected ['calcium_series']")
    sessions = nwb_to_sessions(
        nwb_path,
        dataset=dataset,
        session=session,
        modalities=[modality],
        spike_bin_size=spike_bin_size,
        source_sha256=source_sha256,
        calcium_series=options.get("calcium_series"),
    )
    return sessions[modality]


def preprocess_to_session(
    *,
    nwb_path: str | Path,
    out_path: str | Path,
    dataset: str,
    session: str,
    modality: str,
    reader: str,
    spike_bin_size: float,
    options: Mapping[str, Any],
    source_sha256: str | None = None,
) -> None:
    """Read and write atomically: a failure leaves no file at ``out_path``."""
    result = read_modality(
        nwb_path,
        dataset=dataset,
        session=session,
        modality=modality,
        reader=reader,
        spike_bin_size=spike_bin_size,
        options=options,
        source_sha256=source_sha256,
    )
    write_session(result, out_path)
