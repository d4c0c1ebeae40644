"""CalM end to end on a tiny in-memory dataset: tokenizer -> pretrain -> finetune -> evaluate,
plus the rollout's consistency and the stage's input checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import Session, write_session
from neurossl.data.splits import Splits, Windows
from neurossl.methods.calm_family import _hparams, make_method, train_tokenizer
from neurossl.methods.registry import get_method
from neurossl.models.dual_axis import DualAxisConfig
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig, load_tokenizer
from neurossl.names import frozen_metric, is_metric
from neurossl.objectives.calm import CalmNetwork, UnitReadout, UnitScaler, forecast

torch.set_num_threads(1)
RATE = 30.0
TRIAL_FRAMES = 24
N_TRIALS = 16
TASKS = ("forecasting", "stimulus_class", "choice", "behavior_running_speed")
TOKENIZER_HP = {
    "patch": 4,
    "vocab_size": 16,
    "width": 16,
    "steps": 30,
    "batch_size": 32,
    "vocab_sweep": [16, 64],
    "alternative_quantizer": "gumbel",
    "sweep_steps": 5,
}
METHOD_HP = {
    "width": 16,
    "layers": 1,
    "heads": 2,
    "pretrain_steps": 6,
    "adapt_steps": 4,
    "head_steps": 4,
    "batch_size": 4,
    "eval_every": 3,
    "warmup_steps": 1,
    "context": 16,
    "horizon": 8,
}


def _session(name: str, subject: str, n_neurons: int, seed: int) -> Session:
    """Trials of rotating latents read out by the neurons; labels tied to the latents."""
    rng = np.random.default_rng(seed)
    n_bins = N_TRIALS * TRIAL_FRAMES
    t = np.arange(n_bins) / RATE
    stimulus = rng.integers(0, 2, N_TRIALS)
    phase = np.repeat(stimulus * np.pi / 2, TRIAL_FRAMES)
    latents = np.stack([np.sin(2 * np.pi * t + phase), np.cos(2 * np.pi * t + phase)], 1)
    weights = rng.normal(size=(2, n_neurons))
    activity = latents @ weights + 0.05 * rng.standard_normal((n_bins, n_neurons))
    starts = np.arange(N_TRIALS) * TRIAL_FRAMES / RATE
    running = latents[:, :1] * 2.0 + 0.1 * rng.standard_normal((n_bins, 1))
    return Session(
        activity=activity.astype(np.float32),
        modality="calcium",
        bin_size=1 / RATE,
        t0=0.0,
        neurons=pd.DataFrame(
            {
                "id": [f"roi{i}" for i in range(n_neurons)],
                "region": ["VISp"] * n_neurons,
                "depth": np.zeros(n_neurons),
                "cre_line": ["none"] * n_neurons,
            }
        ),
        trials=pd.DataFrame(
            {
                "start": starts,
                "stop": starts + TRIAL_FRAMES / RATE,
                "align": starts,
                "stimulus_class": stimulus,
                "choice": np.where(stimulus == 1, 1, -1),
            }
        ),
        behavior=running.astype(np.float32),
        behavior_names=["running_speed"],
        meta={
            "dataset": "tiny",
            "session": name,
            "subject": subject,
            "source_path": "memory",
            "source_sha256": "0",
            "software_version": "test",
        },
    )


def _windows() -> Windows:
    starts = np.arange(N_TRIALS) * TRIAL_FRAMES / RATE
    split = np.array(["train"] * 10 + ["valid"] * 2 + ["test"] * 4, dtype=object)
    return Windows(starts, starts + TRIAL_FRAMES / RATE, split, np.arange(N_TRIALS))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Splits]:
    root = tmp_path_factory.mktemp("calm")
    specs = {"a-1": ("a", 6), "b-1": ("b", 5), "c-1": ("c", 7)}
    paths = {}
    for i, (name, (subject, n)) in enumerate(specs.items()):
        paths[name] = root / f"{name}.calcium.h5"
        write_session(_session(name, subject, n, seed=i), paths[name])
    splits = Splits(
        dataset="tiny",
        seed=0,
        pretrain_sessions=["a-1", "b-1"],
        heldout_sessions=["c-1"],
        windows={name: _windows() for name in specs},
        neurons={},
        predictability={},
    )
    return paths, splits


def _inputs(dataset, method: str, hparams: dict) -> StageInputs:
    paths, splits = dataset
    return StageInputs("tiny", method, "tiny", 0, paths, splits, TASKS, hparams, "cpu")


@pytest.fixture(scope="module")
def tokenizer_path(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tok")
    report = train_tokenizer(
        _inputs(dataset, "calm", TOKENIZER_HP), root / "tok.pt", root / "report.json"
    )
    assert json.loads((root / "report.json").read_text()) == json.loads(json.dumps(report))
    return root / "tok.pt"


def test_tokenizer_stage_reports_main_sweep_and_alternative(tokenizer_path: Path) -> None:
    report = json.loads((tokenizer_path.parent / "report.json").read_text())
    assert set(report["main"]) == {"valid", "heldout"}
    assert set(report["vocab_sweep"]) == {"16", "64"}
    assert report["vocab_sweep"]["64"]["valid"]["vocab_size"] == 64
    assert report["alternative"]["quantizer"] == "gumbel"
    for metrics in (report["main"]["valid"], report["alternative"]["valid"]):
        assert math.isfinite(metrics["r2"]) and 1 <= metrics["perplexity"] <= 16
    assert load_tokenizer(tokenizer_path).vocab_size == 16


def test_calm_pretrain_finetune_evaluate(dataset, tokenizer_path: Path, tmp_path: Path) -> None:
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path)}
    method = get_method("calm")
    assert method.pretrains and method.modality == "any"
    inputs = _inputs(dataset, "calm", hp)
    pre = StageOutputs(tmp_path / "pre.pt", tmp_path / "pre.csv", tmp_path / "pre_ck")
    method.pretrain(inputs, pre)
    ft = StageOutputs(tmp_path / "ft.pt", tmp_path / "ft.csv", tmp_path / "ft_ck")
    method.finetune(inputs, pre.model, ft)
    log = pd.read_csv(ft.train_log)
    assert set(log["phase"]) == {"adapt", "heads"}
    evaluation = method.evaluate(inputs, ft.model)

    rows = {(r.task, r.metric): r.value for r in evaluation.rows}
    assert {r.session for r in evaluation.rows} == {"c-1"}
    assert all(is_metric(m) for _, m in rows)
    for k in range(1, 9):
        assert math.isfinite(rows[("forecasting", f"mae_h{k}")])
    assert ("forecasting", "mae_h9") not in rows
    assert 0.0 <= rows[("stimulus_class", "bacc")] <= 1.0
    assert 0.0 <= rows[("choice", "bacc")] <= 1.0
    assert math.isfinite(rows[("behavior_running_speed", "r2")])
    assert evaluation.arrays["forecasting/c-1/pred"].shape == (4, 8, 7)  # the scored mode
    assert evaluation.arrays["forecasting/c-1/greedy_pred"].shape == (4, 8, 7)
    assert evaluation.arrays["forecasting/c-1/target"].shape == (4, 8, 7)
    # The frozen-backbone probe is scored as metric rows of the same task.
    for task, metric in (("choice", "bacc"), ("stimulus_class", "acc"),
                         ("behavior_running_speed", "r2")):  # fmt: skip
        assert math.isfinite(rows[(task, frozen_metric(metric))])


def test_scratch_skips_pretraining_and_rollout_is_prefix_consistent(
    dataset, tokenizer_path: Path, tmp_path: Path
) -> None:
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path)}
    method = make_method("scratch_dual_axis")
    assert not method.pretrains
    with pytest.raises(ValueError, match="has no pretraining stage"):
        method.pretrain(_inputs(dataset, "scratch_dual_axis", hp), StageOutputs())
    ft = StageOutputs(tmp_path / "ft.pt", tmp_path / "ft.csv", tmp_path / "ft_ck")
    inputs = _inputs(dataset, "scratch_dual_axis", {**hp, "head_steps": 1})
    method.finetune(inputs, None, ft)
    payload = torch.load(ft.model, weights_only=False)
    network = method._network(inputs, _hparams(inputs), "cpu", restoring=True)
    network.load_state_dict(payload["adapted"], strict=False)
    g = torch.Generator().manual_seed(0)
    batch = {
        "activity": torch.randn(2, 16, 7, generator=g),
        "unit": torch.arange(11, 18).repeat(2, 1),
        "session": torch.tensor([2, 2]),
        "neuron_mask": torch.ones(2, 7, dtype=torch.bool),
    }
    for mode, feedback in [("direct", "greedy"), ("direct", "retokenize"), ("greedy", "greedy"),
                           ("expected", "greedy")]:  # fmt: skip
        short = forecast(network, batch, 1, mode, feedback=feedback)
        long = forecast(network, batch, 3, mode, feedback=feedback)
        assert long.shape == (2, 12, 7)
        torch.testing.assert_close(long[:, :4], short, atol=1e-5, rtol=1e-5)


def test_next_patch_readout_starts_at_persistence() -> None:
    """Before training the read-out's skip repeats the last frame of the current patch, so
    the backbone only has to learn the residual over persistence."""
    tokenizer = Tokenizer(TokenizerConfig(patch=4, vocab_size=16, width=16, layers=0))
    network = CalmNetwork(
        tokenizer,
        DualAxisConfig(16, 10, 2, width=16, layers=1, value_patch=4),
        UnitScaler(np.zeros(10), np.ones(10)),
    )
    torch.nn.init.zeros_(network.next_patch.weight)
    torch.nn.init.zeros_(network.next_patch.bias)
    patches = torch.randn(2, 3, 5, 4)
    out = network.read_next_patch(torch.randn(2, 3, 5, 16), patches)
    torch.testing.assert_close(out, patches[..., -1:].expand_as(out))


def test_stage_input_errors(dataset, tokenizer_path: Path) -> None:
    method = make_method("calm")
    with pytest.raises(ValueError, match=r"hparams\.calm: unknown key 'widht'"):
        method.pretrain(_inputs(dataset, "calm", {"widht": 3}), StageOutputs())
    with pytest.raises(ValueError, match="tokenizer_path"):
        method.pretrain(_inputs(dataset, "calm", {}), StageOutputs())
    with pytest.raises(ValueError, match="calm_family has no method"):
        make_method("mtm")


def test_unit_readout_reads_each_unit_and_ignores_padding():
    """Two units with opposite responses: their mean is zero, the per-unit read-out is not."""
    torch.manual_seed(0)
    head = UnitReadout(n_units=3, width=4, outputs=1, rank=2)
    states = torch.randn(1, 3, 4)
    unit, mask = torch.tensor([[1, 2, 0]]), torch.tensor([[True, True, False]])
    assert torch.equal(head(states, unit, mask), head.bias.expand(1, 1))  # untrained: bias
    with torch.no_grad():
        head.weight.normal_()
    flipped = states.clone()
    flipped[:, 1] = -states[:, 1]
    assert not torch.allclose(head(states, unit, mask), head(flipped, unit, mask))
    padded = states.clone()
    padded[:, 2] = 100.0
    assert torch.allclose(head(states, unit, mask), head(padded, unit, mask))
    assert head(states[:, None].expand(1, 5, 3, 4), unit, mask).shape == (1, 5, 1)


def test_pretraining_ignores_the_finetune_only_hparams(
    dataset, tokenizer_path: Path, tmp_path: Path
) -> None:
    """The pretrain rule drops these keys from its params; pretraining must not read them."""
    method = get_method("calm")
    hp = {**METHOD_HP, "tokenizer_path": str(tokenizer_path)}
    other = {"adapt_steps": 7, "head_steps": 9, "finetune_lr": 0.5, "probe_steps": 3,
             "probe_lr": 0.5, "probe_weight_decay": 0.9, "forecast_mode": "sample",
             "feedback": "retokenize", "samples": 3, "query_weight": 0.5,
             "hide_ratio": 0.5}  # fmt: skip
    assert set(other) == method.finetune_only_hparams
    states = []
    for run, extra in (("a", {}), ("b", other)):
        out = StageOutputs(tmp_path / f"{run}.pt", tmp_path / f"{run}.csv", tmp_path / f"{run}_ck")
        method.pretrain(_inputs(dataset, "calm", hp | extra), out)
        states.append(torch.load(out.model, weights_only=False)["state"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
