"""MtM's and POYO-SSL's objectives on CalM's dual-axis backbone: one forward for all three
objectives (identical outputs when the masks are empty), the masks, and each new method
pretraining, fine-tuning and evaluating on tiny calcium data."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_bf16_rehearsal import DEVICES, _stages
from test_bf16_rehearsal import bf16 as bf16  # a fixture
from test_calm_family import METHOD_HP, TOKENIZER_HP, _session, _windows

from neurossl import catalog
from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import write_session
from neurossl.data.splits import Splits
from neurossl.methods.calm_family import _hparams, train_tokenizer
from neurossl.methods.registry import get_method
from neurossl.models.dual_axis import DualAxisConfig
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig
from neurossl.objectives import dual_axis_masking as dam
from neurossl.objectives.calm import CalmNetwork, UnitScaler, make_pretrain_loss
from neurossl.objectives.mtm import MaskRatios
from neurossl.train.runtime import seed_everything
from neurossl.train_logs import TOKENS

torch.set_num_threads(1)
TASKS = ("forecasting", "stimulus_class", "behavior_running_speed")
SPECS = {"a-1": ("a", 6), "b-1": ("b", 5), "c-1": ("c", 7)}
PREDICTABLE = {"a-1": ["roi0", "roi2", "roi4"], "b-1": ["roi1", "roi3"]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Splits]:
    """test_calm_family's sessions with two imaging areas and predictability groups."""
    root = tmp_path_factory.mktemp("shared")
    paths, neurons = {}, {}
    for i, (name, (subject, n)) in enumerate(SPECS.items()):
        session = _session(name, subject, n, seed=i)
        regions = ["VISp" if k % 2 else "VISl" for k in range(n)]
        session = dataclasses.replace(session, neurons=session.neurons.assign(region=regions))
        paths[name] = root / f"{name}.calcium.h5"
        write_session(session, paths[name])
        ids = [f"roi{k}" for k in range(n)]
        chosen = PREDICTABLE.get(name, ids[:3])
        neurons[name] = {"predictable": chosen,
                         "unpredictable": [r for r in ids if r not in chosen]}  # fmt: skip
    splits = Splits("tiny", 0, ["a-1", "b-1"], ["c-1"], {n: _windows() for n in SPECS},
                    {"calcium": neurons}, {})  # fmt: skip
    return paths, splits


def _inputs(dataset, method: str, hparams: dict) -> StageInputs:
    paths, splits = dataset
    return StageInputs("tiny", method, "tiny", 0, paths, splits, TASKS, hparams, "cpu")


@pytest.fixture(scope="module")
def tokenizer_path(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tok")
    hp = {**TOKENIZER_HP, "vocab_sweep": [16], "alternative_quantizer": "none", "steps": 20}
    train_tokenizer(_inputs(dataset, "calm", hp), root / "tok.pt", root / "report.json")
    return root / "tok.pt"


def _network() -> CalmNetwork:
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(patch=4, vocab_size=16, width=16, layers=0))
    config = DualAxisConfig(16, 12, 2, width=16, layers=2, value_patch=4, masked_input=True,
                            prompts=4)  # fmt: skip
    return CalmNetwork(tokenizer, config, UnitScaler(np.zeros(12), np.ones(12))).eval()


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False  # a smaller session, padded
    return {
        "activity": torch.randn(3, 20, 6, generator=g),
        "unit": torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 0, 0]]),
        "session": torch.tensor([0, 0, 1]),
        "neuron_mask": mask,
        "region": torch.tensor([[0, 1, 0, 1, 0, 1], [0, 1, 0, 1, 0, 1], [1, 1, 0, 0, 0, 0]]),
    }


class _Recorder(torch.nn.Module):
    """Passes every call to the network and keeps what it returned."""

    def __init__(self, network: CalmNetwork) -> None:
        super().__init__()
        self.module = network
        self.outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, batch, **kwargs):
        out = self.module(batch, **kwargs)
        self.outputs.append(out)
        return out


def _forward_of(loss_fn, network: CalmNetwork, batch) -> dict[str, torch.Tensor]:
    recorder = _Recorder(network)
    loss, _ = loss_fn(recorder, batch)
    assert torch.isfinite(loss)
    (out,) = recorder.outputs
    return out


def test_empty_masks_give_identical_outputs_across_the_three_objectives(monkeypatch):
    """Same weights, no token hidden: the three objectives' forward calls agree exactly; the
    attention each uses is the only other difference (CalM and MtM's causal scheme are
    causal, POYO-SSL and MtM's other schemes bidirectional)."""
    network, batch = _network(), _batch()
    steps = 20 // 4
    calm = _forward_of(make_pretrain_loss(), network, batch)
    torch.testing.assert_close(calm["logits"], network(batch)["logits"], rtol=0, atol=0)

    def empty_mtm(scheme, neuron_mask, region, steps, ratios, causal):
        hidden = torch.zeros(neuron_mask.shape[0], steps, neuron_mask.shape[1], dtype=torch.bool)
        return hidden, neuron_mask[:, None, :].expand_as(hidden), causal

    def empty_poyo(neuron_mask, steps, patch, ratio, span):
        return torch.zeros(neuron_mask.shape[0], steps, neuron_mask.shape[1], dtype=torch.bool)

    monkeypatch.setattr(dam, "poyo_token_mask", empty_poyo)
    poyo = _forward_of(dam.make_poyo_loss(), network, batch)
    for causal, reference in ((True, calm), (False, poyo)):
        monkeypatch.setattr(
            dam, "mtm_token_mask", lambda *a, causal=causal: empty_mtm(*a, causal=causal)
        )
        mtm = _forward_of(dam.make_mtm_loss(prompts=False), network, batch)
        for key in ("hidden", "logits", "codes"):
            torch.testing.assert_close(mtm[key], reference[key], rtol=0, atol=0)
    # A bidirectional forward is not a causal one: the attention mask is real.
    assert not torch.allclose(poyo["hidden"], calm["hidden"])
    # An empty token mask is no mask, under either attention.
    for causal in (True, False):
        empty = torch.zeros(3, steps, 6, dtype=torch.bool)
        torch.testing.assert_close(
            network(batch, token_mask=empty, causal=causal)["hidden"],
            network(batch, causal=causal)["hidden"], rtol=0, atol=0,
        )  # fmt: skip


def test_mtm_masks_on_the_token_grid_respect_padding_and_regions():
    batch, ratios = _batch(), MaskRatios()
    torch.manual_seed(0)
    for scheme in ("neuron", "causal", "intra_region", "inter_region"):
        hidden, target, causal = dam.mtm_token_mask(
            scheme, batch["neuron_mask"], batch["region"], 5, ratios
        )
        assert hidden.shape == target.shape == (3, 5, 6)
        assert not hidden[2, :, 4:].any() and not target[2, :, 4:].any()  # padding
        assert target.any() and not (target & ~hidden).any()
        assert causal == (scheme == "causal")
    hidden, _, _ = dam.mtm_token_mask("causal", batch["neuron_mask"], batch["region"], 5, ratios)
    assert hidden[0, :, 0].tolist() == [False, False, True, True, True]  # last 60 % of steps
    hidden, _, _ = dam.mtm_token_mask(
        "inter_region", batch["neuron_mask"], batch["region"], 5, ratios
    )
    for row in range(3):  # one whole region of the window's own neurons
        n = int(batch["neuron_mask"][row].sum())
        chosen = set(batch["region"][row, :n][hidden[row, 0, :n]].tolist())
        assert len(chosen) == 1 and hidden[row, :, :n].all(0).sum() >= 1
    one_region = torch.zeros(3, 6, dtype=torch.long)
    assert dam.batch_schemes(("neuron", "inter_region"), batch["neuron_mask"], one_region) == [
        "neuron"
    ]


def test_poyo_mask_hides_whole_patch_spans_of_real_neurons():
    torch.manual_seed(0)
    mask = torch.ones(64, 6, dtype=torch.bool)
    mask[:, 5] = False
    hidden = dam.poyo_token_mask(mask, 12, 4, 0.3, 6)  # 6 frames -> spans of 2 patches
    assert hidden.shape == (64, 12, 6) and not hidden[:, :, 5].any()
    assert 0.15 < hidden[:, :, :5].float().mean() < 0.45


@pytest.mark.parametrize("name", ["dual_axis_mtm", "dual_axis_poyo_ssl"])
def test_method_pretrains_finetunes_and_evaluates(dataset, tokenizer_path, tmp_path, name):
    spec = catalog.method(name)
    assert spec.pretrains and spec.scratch == "scratch_dual_axis" and spec.objective_of
    # calm also runs on spikes (docs/calm_spikes.md); these objectives on calcium only.
    assert set(spec.modalities) <= set(catalog.method("calm").modalities)
    assert spec.hparams == catalog.method("calm").hparams
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path), "pretrain_steps": 4}
    method = get_method(name)
    inputs = _inputs(dataset, name, hp)
    pre = StageOutputs(tmp_path / "pre.pt", tmp_path / "pre.csv", tmp_path / "pre_ck")
    method.pretrain(inputs, pre)
    log = pd.read_csv(pre.train_log)
    assert (log[TOKENS] > 0).all() and np.isfinite(log["loss"]).all()
    ft = StageOutputs(tmp_path / "ft.pt", tmp_path / "ft.csv", tmp_path / "ft_ck")
    method.finetune(inputs, pre.model, ft)
    evaluation = method.evaluate(inputs, ft.model)
    rows = {(r.task, r.metric): r.value for r in evaluation.rows}
    assert {r.session for r in evaluation.rows} == {"c-1"}
    assert all(math.isfinite(rows[("forecasting", f"mae_h{k}")]) for k in range(1, 9))
    assert 0.0 <= rows[("stimulus_class", "bacc")] <= 1.0
    assert math.isfinite(rows[("behavior_running_speed", "r2")])

    state = torch.load(pre.model, weights_only=False)["state"]
    seed_everything(0)
    fresh = method._network(inputs, _hparams(inputs), "cpu").state_dict()
    assert "backbone.mask_embed" in state
    assert ("backbone.prompt_embed.weight" in state) == (name == "dual_axis_mtm")
    # The diet: POYO-SSL pretrains on the predictable neurons only, so the embeddings of
    # the unpredictable ones never move; MtM reads every neuron.
    vocab = method._network(inputs, _hparams(inputs), "cpu").backbone.config
    assert vocab.masked_input
    from neurossl.data.loader import DatasetVocab

    units = DatasetVocab.from_paths(dataset[0]).unit_ids
    moved = {u for i, u in enumerate(units)
             if not torch.equal(state["backbone.unit_embed.weight"][i],
                                fresh["backbone.unit_embed.weight"][i])}  # fmt: skip
    pretrain_units = {f"{s}/{r}" for s in ("a-1", "b-1") for r in
                      [f"roi{k}" for k in range(SPECS[s][1])]}  # fmt: skip
    predictable = {f"{s}/{r}" for s, ids in PREDICTABLE.items() for r in ids}
    if name == "dual_axis_poyo_ssl":
        assert moved == predictable
    else:
        assert moved == pretrain_units


def test_equal_budget_tokens_per_step(dataset, tokenizer_path):
    """MtM attends every token of a window, as CalM does; POYO-SSL's diet fewer."""
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path)}
    tokens = {}
    for name in ("calm", "dual_axis_mtm", "dual_axis_poyo_ssl"):
        method = get_method(name)
        inputs = _inputs(dataset, name, hp)
        network = method._network(inputs, _hparams(inputs), "cpu")
        sessions, ids = method._pretrain_neurons(inputs)
        from neurossl.data.loader import WindowDataset, make_loader

        data = WindowDataset(inputs.session_paths, inputs.splits, "train", sessions, ids)
        batch = next(iter(make_loader(data, 4, shuffle=False, seed=0, by_session=False)))
        tokens[name] = method._pretrain_loss(_hparams(inputs))(network, batch)[1][TOKENS]
    assert tokens["dual_axis_mtm"] == tokens["calm"] > tokens["dual_axis_poyo_ssl"] > 0


def test_the_module_serves_only_its_own_methods():
    from neurossl.methods.shared_backbone import make_method

    assert make_method("dual_axis_mtm").pretrains
    with pytest.raises(ValueError, match="shared_backbone has no method 'calm'"):
        make_method("calm")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["dual_axis_mtm", "dual_axis_poyo_ssl"])
def test_method_under_bf16(dataset, tokenizer_path, tmp_path, bf16, name, device):
    """The masked paths (mask embedding, bidirectional attention, prompts) under the GPU's
    bf16 autocast, rehearsed on CPU (tests/test_bf16_rehearsal.py)."""
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path), "pretrain_steps": 3}
    inputs = StageInputs("tiny", name, "tiny", 0, *dataset, TASKS, hp, device)
    rows = _stages(name, inputs, tmp_path, bf16)
    assert {"forecasting", "stimulus_class"} <= {r.task for r in rows}
