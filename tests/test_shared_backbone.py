"""MtM's and POYO-SSL's objectives on CalM's dual-axis backbone: one forward for all three
objectives (identical outputs when the masks are empty), the masks, each new method
pretraining, fine-tuning and evaluating on tiny calcium and spiking data, and the
report's shared-backbone table with spiking rows."""

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
from test_calm_spikes import SPIKE_METHOD_HP, SPIKE_TASKS, _spike_stages
from test_calm_spikes import spiking as spiking  # a fixture

from neurossl import catalog
from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import write_session
from neurossl.data.splits import Splits
from neurossl.methods.calm_family import _hparams, train_tokenizer
from neurossl.methods.registry import get_method
from neurossl.models.dual_axis import DualAxisConfig
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig
from neurossl.objectives import dual_axis_masking as dam
from neurossl.objectives.calm import CalmNetwork, SpikeInput, UnitScaler, make_pretrain_loss
from neurossl.objectives.calm_spikes import hidden_poisson_loss
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


def _network(spikes: bool = False) -> CalmNetwork:
    """A tiny network; ``spikes``: CalM's spiking network (smoothed-count input, rate
    read-outs with a log mean count offset per unit)."""
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(patch=4, vocab_size=16, width=16, layers=0))
    config = DualAxisConfig(16, 12, 2, width=16, layers=2, value_patch=4, masked_input=True,
                            prompts=4)  # fmt: skip
    spike_input = SpikeInput(0.02, np.full(12, np.log(0.5))) if spikes else None
    scaler = UnitScaler(np.zeros(12), np.ones(12))
    return CalmNetwork(tokenizer, config, scaler, spikes=spike_input).eval()


def _batch(spikes: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False  # a smaller session, padded
    activity = torch.randn(3, 20, 6, generator=g)
    if spikes:  # counts; a padded neuron has none
        activity = torch.poisson(torch.full((3, 20, 6), 0.5), generator=g) * mask[:, None, :]
    return {
        "activity": activity,
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


@pytest.mark.parametrize("spikes", [False, True], ids=["calcium", "spikes"])
def test_empty_masks_give_identical_outputs_across_the_three_objectives(monkeypatch, spikes):
    """Same weights, no token hidden: the three objectives' forward calls agree exactly; the
    attention each uses is the only other difference (CalM and MtM's causal scheme are
    causal, POYO-SSL and MtM's other schemes bidirectional). On spikes as on calcium."""
    network, batch = _network(spikes), _batch(spikes)
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
    # Wherever calm runs (docs/calm_spikes.md), its objective's rivals run too.
    assert spec.modalities == catalog.method("calm").modalities == ("spikes", "calcium")
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


def _tokens_per_step(inputs_of) -> dict[str, int]:
    """Tokens one pretraining step attends, per objective on the shared backbone;
    ``inputs_of(method)`` gives the method's StageInputs."""
    from neurossl.data.loader import WindowDataset, make_loader

    tokens = {}
    for name in ("calm", "dual_axis_mtm", "dual_axis_poyo_ssl"):
        method = get_method(name)
        inputs = inputs_of(name)
        network = method._network(inputs, _hparams(inputs), "cpu")
        sessions, ids = method._pretrain_neurons(inputs)
        data = WindowDataset(inputs.session_paths, inputs.splits, "train", sessions, ids)
        batch = next(iter(make_loader(data, 4, shuffle=False, seed=0, by_session=False)))
        tokens[name] = method._pretrain_loss(_hparams(inputs))(network, batch)[1][TOKENS]
    return tokens


def test_equal_budget_tokens_per_step(dataset, tokenizer_path):
    """MtM attends every token of a window, as CalM does; POYO-SSL's diet fewer."""
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path)}
    tokens = _tokens_per_step(lambda name: _inputs(dataset, name, hp))
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


# --- on spikes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def spike_runs(spiking, tmp_path_factory: pytest.TempPathFactory):
    """method -> (evaluation, run folder) on test_calm_spikes' tiny spiking sessions."""
    return {name: _spike_stages(spiking, name, tmp_path_factory.mktemp(name))
            for name in ("dual_axis_mtm", "dual_axis_poyo_ssl")}  # fmt: skip


@pytest.mark.parametrize("name", ["dual_axis_mtm", "dual_axis_poyo_ssl"])
def test_method_on_spikes_scores_every_spiking_task(spike_runs, name):
    """A few steps of each objective on counts, then CalM's adaptation and scoring: a row
    for every rate task and for decoding, as calm and scratch_dual_axis have."""
    evaluation, run = spike_runs[name]
    metrics = {(r.task, r.metric): r.value for r in evaluation.rows}
    session = evaluation.rows[0].session
    for task in ("co_smoothing", "forecasting", "inter_region", "intra_region"):
        assert np.isfinite(metrics[(task, "bps")]), task
        pred = evaluation.arrays[f"{task}/{session}/pred"]
        assert pred.shape[1] == 22 and np.nanmin(pred) > 0  # every bin, partial patch too
    assert 0 <= metrics[("choice", "bacc")] <= 1 and ("choice", "frozen_bacc") in metrics
    assert np.isfinite(metrics[("behavior_wheel_speed", "r2")])
    pre = pd.read_csv(run / "pre.csv")
    # The masked objective's spiking term, not calcium's MSE and not CalM's next patch.
    assert np.isfinite(pre["masked_patch_poisson"].dropna()).all() and len(pre) > 0
    assert "masked_patch_mse" not in pre and "next_patch_poisson" not in pre
    assert (pre[TOKENS].dropna() > 0).all()
    assert "query_poisson" in pd.read_csv(run / "ft.csv")  # CalM's adaptation


def test_spiking_masked_loss_reads_hidden_counts_only_as_targets(monkeypatch):
    """Hidden tokens' counts never reach the states (no leak), but are what the loss
    scores: their code of the *unmasked* counts and their Poisson NLL from CalM's rate
    read-out at their own patch."""
    network, batch = _network(spikes=True), _batch(spikes=True)
    hidden = torch.zeros(3, 5, 6, dtype=torch.bool)
    hidden[:, 2:4, 1] = True  # steps 2-3 of neuron 1 in every window
    hidden[2, :, 4:] = False
    monkeypatch.setattr(dam, "poyo_token_mask", lambda *a: hidden)
    loss_fn = dam.make_poyo_loss()
    out = _forward_of(loss_fn, network, batch)
    changed = dict(batch, activity=batch["activity"].clone())
    changed["activity"][:, 8:16, 1] += 3.0  # the hidden tokens' bins
    out_changed = _forward_of(loss_fn, network, changed)
    torch.testing.assert_close(out_changed["hidden"], out["hidden"], rtol=0, atol=0)
    # The targets: codes and counts of the unmasked batch (the forward's codes at the
    # hidden tokens are those of silence).
    codes = network.codes(changed)
    assert not torch.equal(codes[hidden], out_changed["codes"][hidden])
    _, metrics = loss_fn(network, changed)
    ce, _ = dam.masked_code_loss(out_changed["logits"], codes, hidden)
    assert metrics["masked_code_ce"] == pytest.approx(float(ce.detach()), rel=1e-6)
    log_rates = network.log_rates(out_changed["hidden"], changed, network.next_rates)
    nll = hidden_poisson_loss(log_rates, changed["activity"], hidden)
    assert metrics["masked_patch_poisson"] == pytest.approx(float(nll.detach()), rel=1e-6)
    before = loss_fn(network, batch)[1]["masked_patch_poisson"]
    assert metrics["masked_patch_poisson"] != pytest.approx(before)


def test_equal_budget_tokens_per_step_on_spikes(spiking):
    """As on calcium: MtM attends every token, POYO-SSL's diet (predictable units) fewer."""
    paths, splits, tokenizer = spiking
    hp = SPIKE_METHOD_HP | {"tokenizer_path": str(tokenizer)}
    tokens = _tokens_per_step(
        lambda name: StageInputs("toy", name, "tiny", 0, paths, splits, SPIKE_TASKS, hp)
    )
    assert tokens["dual_axis_mtm"] == tokens["calm"] > tokens["dual_axis_poyo_ssl"] > 0


# --- the report's table with spiking rows ------------------------------------------------


def _spiking_collection():
    """Per-seed values of the dual-axis rows and the families' own methods on spikes.

    Values are chosen so the spreads are known: co-smoothing bps on the shared backbone
    calm 0.10, dual_axis_mtm 0.16, dual_axis_poyo_ssl 0.12; on their own backbones calm
    0.10, mtm 0.40, poyo_ssl 0.20. Choice bacc: 0.70 / 0.74 / 0.66 and 0.70 / 0.80 /
    0.75; poyo_ssl has no choice row (not supported).
    """
    from neurossl.report.collect import MISSING_COLUMNS, Collection, RunKey

    bps = {"calm": 0.10, "dual_axis_mtm": 0.16, "dual_axis_poyo_ssl": 0.12,
           "scratch_dual_axis": 0.05, "mtm": 0.40, "poyo_ssl": 0.20, "scratch_ndt": 0.3,
           "scratch_perceiver": 0.1}  # fmt: skip
    bacc = {"calm": 0.70, "dual_axis_mtm": 0.74, "dual_axis_poyo_ssl": 0.66,
            "scratch_dual_axis": 0.6, "mtm": 0.80, "scratch_ndt": 0.7,
            "scratch_perceiver": 0.6}  # fmt: skip
    seeds, rows = (0, 1, 2), []
    for seed in seeds:
        noise = 0.01 * (seed - 1)  # the same per seed for every method: means stay exact
        for table, task, metric in ((bps, "co_smoothing", "bps"), (bacc, "choice", "bacc")):
            rows += [dict(method=m, modality="spikes", size="tiny", task=task, metric=metric,
                          seed=seed, value=v + noise) for m, v in table.items()]  # fmt: skip
    per_seed = pd.DataFrame(rows)
    expected = tuple(RunKey(m, "spikes", "tiny", s) for m in bps for s in seeds)
    missing = pd.DataFrame(columns=list(MISSING_COLUMNS))
    collection = Collection(per_seed, missing, expected, {"spikes": ("co_smoothing", "choice")})
    return collection, per_seed


def test_report_table_shows_spiking_rows_and_compares_objective_with_backbone():
    from neurossl.report.matrix import Column, build_matrix
    from neurossl.report.shared_backbone import objective_vs_backbone, shared_rows
    from neurossl.report.tables import NOT_SUPPORTED, OK

    collection, per_seed = _spiking_collection()
    shared = build_matrix(collection, per_seed, ["spikes"], "tiny", 0.95, rows=shared_rows())
    own = build_matrix(collection, per_seed, ["spikes"], "tiny", 0.95)
    co_smoothing = Column("spikes", "co_smoothing", "bps")
    choice = Column("spikes", "choice", "bacc")
    assert {co_smoothing, choice} <= set(shared.columns)
    for method in ("calm", "dual_axis_mtm", "dual_axis_poyo_ssl", "scratch_dual_axis"):
        for column in (co_smoothing, choice):
            cell = shared.cells[(method, column)]
            assert cell.state == OK and cell.n_seeds == 3, (method, column)
    best = shared.cells[("dual_axis_mtm", co_smoothing)]
    assert best.best and best.mean == pytest.approx(0.16)
    assert best.gain.reference == "scratch_dual_axis" and best.gain.mean == pytest.approx(0.11)
    assert own.cells[("poyo_ssl", choice)].state == NOT_SUPPORTED
    spreads = {s.column: s for s in objective_vs_backbone(shared, own)}
    cs = spreads[co_smoothing]
    # Own backbones on spikes: mtm on NDT, poyo_ssl on the Perceiver, calm on the dual axis.
    assert cs.objectives == ("calm", "mtm", "poyo_ssl")
    assert cs.shared == pytest.approx(0.06) and cs.own == pytest.approx(0.30)
    assert (cs.shared_best, cs.own_best) == ("dual_axis_mtm", "mtm")
    text = cs.sentence()
    assert text.startswith("spikes co_smoothing (bps): the objectives (calm, mtm, poyo_ssl)")
    assert "differ by 0.06 on the shared backbone" in text and "by 0.3 on their own" in text
    assert "20% of the other" in text
    # Decoding: poyo_ssl has no own row, so the spread is over calm and mtm.
    ch = spreads[choice]
    assert ch.objectives == ("calm", "mtm") and ch.compared
    assert ch.shared == pytest.approx(0.04) and ch.own == pytest.approx(0.10)
    assert (ch.shared_best, ch.own_best) == ("dual_axis_mtm", "mtm")
