"""The shipped config files: the demo's budgets and the protocol overlay that replaces them.

Snakemake merges overlays into the base config key by key, so the protocol run is only
independent of the demo's budgets if it sets every hyper-parameter the demo sets.
"""

from __future__ import annotations

import yaml

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
    for method, keys in demo.items():
        for key, value in keys.items():
            if key.endswith("steps"):
                assert value <= protocol[method][key], (method, key)
            else:
                assert value == protocol[method][key], (method, key)


def test_the_protocol_writes_its_own_results_on_at_least_three_seeds():
    demo, protocol = _load("config.yaml"), _load("protocol.yaml")
    assert protocol["results"] != demo["results"]
    assert len(protocol["seeds"]) >= 3
    assert set(protocol) <= {"results", "seeds", "hparams"}
