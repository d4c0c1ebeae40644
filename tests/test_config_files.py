"""The shipped config files: the demo's budgets and the protocol overlay that replaces them.

Snakemake merges overlays into the base config key by key, so the protocol run is only
independent of the demo's budgets if it sets every hyper-parameter the demo sets.
"""

from __future__ import annotations

import yaml

from neurossl.methods.traits import check_hparams, method_traits
from workflow_helpers import REPO

CONFIG = REPO / "config"


def _load(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text())


def test_the_protocol_sets_every_hparam_the_demo_sets():
    demo, protocol = _load("config.yaml")["hparams"], _load("protocol.yaml")["hparams"]
    unpinned = {
        method: sorted(set(keys) - set(protocol.get(method, {}))) for method, keys in demo.items()
    }
    missing = {method: keys for method, keys in unpinned.items() if keys}
    assert not missing, f"config/protocol.yaml leaves the demo's budget in place for {missing}"


def test_the_demo_trains_less_than_the_protocol_and_the_same_recipe():
    """The demo cuts step counts only: objectives and batch sizes match, so its report
    exercises the same code paths as the protocol's."""
    demo, protocol = _load("config.yaml")["hparams"], _load("protocol.yaml")["hparams"]

    def check(where: tuple[str, ...], demo_keys: dict, protocol_keys: dict) -> None:
        for key, value in demo_keys.items():
            if isinstance(value, dict):  # per-modality overrides (e.g. ``spikes``)
                check((*where, key), value, protocol_keys[key])
            elif key.endswith("steps"):
                assert value <= protocol_keys[key], (*where, key)
            else:
                assert value == protocol_keys[key], (*where, key)

    for method, keys in demo.items():
        check((method,), keys, protocol[method])


def test_the_protocol_writes_its_own_results_on_at_least_three_seeds():
    demo, protocol = _load("config.yaml"), _load("protocol.yaml")
    assert protocol["results"] != demo["results"]
    assert len(protocol["seeds"]) >= 3
    assert set(protocol) <= {"results", "seeds", "hparams", "methods"}


def test_the_large_corpus_overlay_varies_only_the_diet_in_pretraining():
    """The diet ablation compares what pretraining saw, so every diet pretrains with the
    same objective and budget; and every key the protocol sets for those methods is set
    again, so none keeps a value chosen on the smaller corpus."""
    protocol, overlay = _load("protocol.yaml")["hparams"], _load("poyo_ssl_large_corpus.yaml")
    finetune_only = method_traits("poyo_ssl").finetune_only_hparams
    pretraining = {
        method: {k: v for k, v in overlay["hparams"][method].items() if k not in finetune_only}
        for method in ("poyo_ssl", "poyo_ssl_mixed", "poyo_ssl_reverse")
    }
    assert pretraining["poyo_ssl"]["aux_weight"] > 0
    assert len({tuple(sorted(keys.items())) for keys in pretraining.values()}) == 1, pretraining
    for method, keys in overlay["hparams"].items():
        # The overlay chain runs on calcium only (poyo_ssl_sixteen_seeds.yaml).
        assert set(protocol[method]) - {"spikes"} <= set(keys), method
    assert overlay["results"] != _load("poyo_ssl_long_heldout.yaml")["results"]


def test_every_shipped_config_has_hparams_its_methods_accept():
    """Each file as the workflow sees it: overlays merged over the embedded default."""
    base = _load("config.yaml")["hparams"]
    for path in sorted(CONFIG.glob("*.yaml")):
        for owner, values in (yaml.safe_load(path.read_text()).get("hparams") or {}).items():
            check_hparams(owner, {**base.get(owner, {}), **values})


SHARED_BACKBONE = ("dual_axis_mtm", "dual_axis_poyo_ssl")
#: POYO-SSL's pretraining diets besides its own (ablations: the protocol trains them).
POYO_DIETS = ("poyo_ssl_mixed", "poyo_ssl_reverse")


def test_the_protocol_adds_the_ablations_at_calms_budget():
    """The protocol trains the demo's methods plus the ablations: the objectives on CalM's
    backbone, each at calm's budget key for key (equal steps and batch:
    docs/shared_backbone.md), as the Allen config does, and POYO-SSL's two other diets.
    The demo keeps calm's budget for the shared-backbone methods without training them."""
    demo, protocol = _load("config.yaml"), _load("protocol.yaml")
    ablations = {*SHARED_BACKBONE, *POYO_DIETS}
    assert protocol["methods"] == [
        m for m in protocol["methods"] if m in demo["methods"] or m in ablations
    ]
    assert set(protocol["methods"]) == set(demo["methods"]) | ablations
    assert not ablations & set(demo["methods"])
    allen = _load("allen_visual_coding.yaml")
    assert set(SHARED_BACKBONE) <= set(allen["methods"])
    for config in (demo, protocol, allen):
        for method in SHARED_BACKBONE:
            assert config["hparams"][method] == config["hparams"]["calm"], method


def _merged(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base`` key by key, as Snakemake merges config files."""
    out = dict(base)
    for key, value in overlay.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if nested else value
    return out


def test_the_shared_backbone_runs_get_calms_budget_on_spikes_too():
    """On spiking jobs the ``spikes:`` overrides apply (calm_family._hparams): there too the
    objectives on CalM's backbone train calm's steps and batch, key for key, in every
    config as the workflow sees it (overlays over the demo). The IBL config, which runs
    calm on spikes, runs them too, so a user with data gets the table."""
    from neurossl.methods.calm_family import _with_overrides

    demo = _load("config.yaml")
    ibl = _load("ibl_repeated_site.yaml")
    assert "calm" in ibl["methods"] and set(SHARED_BACKBONE) <= set(ibl["methods"])
    for name in ("config.yaml", "protocol.yaml"):  # calm has a spiking budget to match
        assert "spikes" in _load(name)["hparams"]["calm"], name
    for name in ("config.yaml", "protocol.yaml", "allen_visual_coding.yaml",
                 "ibl_repeated_site.yaml"):  # fmt: skip
        hparams = _merged(demo, _load(name))["hparams"]
        for spikes in (False, True):
            calm = _with_overrides(hparams["calm"], spikes)
            for method in SHARED_BACKBONE:
                assert _with_overrides(hparams[method], spikes) == calm, (name, method, spikes)


def test_the_benchmark_workload_overlay_is_a_config_the_workflow_accepts():
    """benchmarks/demo_workload_4e77823.yaml (benchmarks/compare_demo_trees.sh) merged over
    the demo: known methods, modalities they run on, and hparams they accept; so the
    same-work comparison keeps running as the method table changes."""
    from neurossl.config_checks import check_config
    from neurossl.names import METHODS

    overlay = yaml.safe_load((REPO / "benchmarks" / "demo_workload_4e77823.yaml").read_text())
    config = _merged(_load("config.yaml"), overlay)
    assert set(config["methods"]) <= set(METHODS)
    assert set(config["method_modalities"]) <= set(config["methods"])
    check_config(config)
    for method in config["methods"]:
        check_hparams(method, config["hparams"].get(method, {}))
