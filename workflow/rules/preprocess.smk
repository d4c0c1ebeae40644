"""NWB -> Session HDF5, one job per (session, modality)."""


rule preprocess:
    input:
        nwb=raw_nwb,
    output:
        session=f"{RESULTS}/{{dataset}}/sessions/{{session}}.{{modality}}.h5",
    params:
        spike_bin_size=lambda wc: DATASETS[wc.dataset].get("preprocess", {}).get(
            "spike_bin_size", 0.02
        ),
        reader=lambda wc: reader_of(DATASETS[wc.dataset]),
        options=lambda wc: DATASETS[wc.dataset].get(reader_of(DATASETS[wc.dataset]), {}),
        source_sha256=known_sha256,
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("preprocess", "{dataset}", "{session}.{modality}"),
    benchmark:
        benchmark_path("preprocess", "{dataset}", "{session}.{modality}")
    script:
        "../../scripts/preprocess_session.py"
