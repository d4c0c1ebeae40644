"""NWB -> Session HDF5, one job per (session, modality)."""


def raw_nwb(wildcards):
    source = DATASETS[wildcards.dataset]["source"]
    if source == "synthetic":
        return f"{RAW}/{wildcards.dataset}/{wildcards.session}.nwb"
    if source == "local":
        from neurossl.data.sources.local import local_session_path

        return local_session_path(DATASETS[wildcards.dataset]["local"], wildcards.session)
    return dandi_raw_path(wildcards)


rule preprocess:
    input:
        nwb=raw_nwb,
    output:
        session=f"{RESULTS}/{{dataset}}/sessions/{{session}}.{{modality}}.h5",
    params:
        spike_bin_size=lambda wc: DATASETS[wc.dataset].get("preprocess", {}).get(
            "spike_bin_size", 0.02
        ),
        source=lambda wc: DATASETS[wc.dataset]["source"],
        options=lambda wc: DATASETS[wc.dataset].get(DATASETS[wc.dataset]["source"], {}),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("preprocess", "{dataset}", "{session}.{modality}"),
    benchmark:
        benchmark_path("preprocess", "{dataset}", "{session}.{modality}")
    script:
        "../../scripts/preprocess_session.py"
