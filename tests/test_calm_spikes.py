"""CalM on spikes: the causal smoothed trace, the rate read-outs, the hidden-token queries,
and calm / scratch_dual_axis trained a few steps and scored on every spiking task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_loader import make_dataset

from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.loader import WindowDataset
from neurossl.eval.metrics import bits_per_spike
from neurossl.methods.calm_family import _batches, _hparams, _load, make_method, train_tokenizer
from neurossl.methods.registry import get_method
from neurossl.models.rate_readout import RateReadout
from neurossl.objectives.calm import query_counts
from neurossl.objectives.calm_spikes import (
    next_patch_poisson_loss,
    query_hide,
    sample_hide,
    spike_trace,
    spike_trace_tensor,
)


def test_trace_is_causal_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, size=(2, 40, 5)).astype(np.float32)
    trace = spike_trace(counts, bin_size=0.02)
    assert trace.shape == counts.shape and trace.dtype == np.float32
    changed = counts.copy()
    changed[:, 25:] += 3  # the future changes ...
    assert np.array_equal(spike_trace(changed, 0.02)[:, :25], trace[:, :25])  # ... not the past


def test_trace_squared_is_a_rate_estimate():
    rate = 0.4
    counts = np.random.default_rng(1).poisson(rate, size=(20_000, 3))
    trace = spike_trace(counts, bin_size=0.01, tau_s=0.05)
    assert (trace[1000:] ** 2).mean() == pytest.approx(rate, rel=0.05)


def test_bad_time_constants_are_refused():
    with pytest.raises(ValueError, match="bin_size"):
        spike_trace(np.zeros((4, 2)), bin_size=0.0)


def test_rate_readout_learns_next_patch_rates_above_the_null():
    torch.manual_seed(0)
    b, s, n, p, d = 16, 6, 4, 3, 8
    hidden = torch.randn(b, s, n, d)
    weight = torch.randn(d, p) * 0.5
    true_log = (hidden @ weight) - 1.0  # rates of patch t + 1 carried by the state at t
    patches = torch.poisson(torch.exp(true_log[:, :-1]))  # [B, S-1, N, P]
    counts = torch.zeros(b, s * p, n)
    next_patches = patches.permute(0, 1, 3, 2).reshape(b, (s - 1) * p, n)
    counts[:, p:] = next_patches
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, -1] = False  # a padded neuron is left out of the loss
    head = RateReadout(d, p, mean_count=float(counts.mean()))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        loss = next_patch_poisson_loss(head(hidden), counts, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rates = torch.exp(head(hidden)[:, :-1]).detach().numpy()
    bps = bits_per_spike(rates.reshape(-1, p), patches.numpy().reshape(-1, p))
    assert bps > 0.2


def test_torch_trace_equals_the_numpy_trace():
    counts = np.random.default_rng(2).poisson(0.5, size=(3, 30, 4)).astype(np.float32)
    trace = spike_trace_tensor(torch.from_numpy(counts), bin_size=0.02).numpy()
    np.testing.assert_allclose(trace, spike_trace(counts, bin_size=0.02), rtol=1e-5, atol=1e-6)


def test_query_hide_covers_hidden_bins_and_the_partial_patch():
    visible = np.ones((10, 3), dtype=bool)
    visible[:, 1] = False  # a held-out neuron
    visible[9, :] = False  # a forecast bin
    hide = query_hide(visible, patch=4)  # 3 tokens, the last one 2 bins past the end
    assert hide.shape == (3, 3)
    assert hide[:, 1].all() and hide[2].all()
    assert not hide[:2, [0, 2]].any()


def test_sampled_hiding_is_by_neuron_or_by_future_and_skips_padding():
    torch.manual_seed(0)
    mask = torch.ones(64, 6, dtype=torch.bool)
    mask[:, -1] = False
    hide = sample_hide(mask, steps=8, ratio=0.25)
    assert not hide[:, :, -1].any()
    for window in hide:
        constant_in_time = bool((window == window[:1]).all())
        future = window.any(1)
        suffix = bool((future[:-1] <= future[1:]).all()) and bool(window[future][:, :5].all())
        assert constant_in_time or suffix


# --- CalM on spikes end to end ------------------------------------------------------

SPIKE_TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region", "choice",
               "behavior_wheel_speed")  # fmt: skip
SPIKE_TOKENIZER_HP = {"steps": 5, "vocab_size": 16, "width": 16, "batch_size": 32,
                      "vocab_sweep": [16], "alternative_quantizer": "none"}  # fmt: skip
SPIKE_METHOD_HP = {"width": 16, "layers": 1, "heads": 2, "pretrain_steps": 3,
                   "adapt_steps": 3, "head_steps": 2, "probe_steps": 5, "batch_size": 4,
                   "eval_every": 3, "warmup_steps": 1}  # fmt: skip


@pytest.fixture(scope="module")
def spiking(tmp_path_factory: pytest.TempPathFactory):
    """Tiny spiking sessions (22-bin windows: the last patch of 4 bins is partial)."""
    root = tmp_path_factory.mktemp("calm_spikes")
    paths, splits = make_dataset(root / "data", n_trials=20, trial_bins=22)
    tok_inputs = StageInputs("toy", "calm", "tiny", 0, paths, splits, (), SPIKE_TOKENIZER_HP)
    report = train_tokenizer(tok_inputs, root / "tok.pt", root / "tok.json")
    assert report["main"]["valid"]["code_usage"] > 0
    return paths, splits, root / "tok.pt"


@pytest.fixture(scope="module")
def runs(spiking, tmp_path_factory: pytest.TempPathFactory):
    """method -> (evaluation, run folder), each method trained once for the module."""
    cache = {}

    def run(method: str):
        if method not in cache:
            cache[method] = _spike_stages(spiking, method, tmp_path_factory.mktemp(method))
        return cache[method]

    return run


def _spike_stages(spiking, method: str, tmp_path: Path):
    paths, splits, tokenizer = spiking
    hp = SPIKE_METHOD_HP | {"tokenizer_path": str(tokenizer)}
    inputs = StageInputs("toy", method, "tiny", 0, paths, splits, SPIKE_TASKS, hp)
    model = get_method(method)
    pretrained = None
    if model.pretrains:
        pretrained = tmp_path / "pre.pt"
        model.pretrain(inputs, StageOutputs(model=pretrained, train_log=tmp_path / "pre.csv",
                                            checkpoint_dir=tmp_path / "pre"))  # fmt: skip
    model.finetune(inputs, pretrained, StageOutputs(model=tmp_path / "ft.pt",
                                                    train_log=tmp_path / "ft.csv",
                                                    checkpoint_dir=tmp_path / "ft"))  # fmt: skip
    return model.evaluate(inputs, tmp_path / "ft.pt"), tmp_path


@pytest.mark.parametrize("method", ["calm", "scratch_dual_axis"])
def test_calm_family_scores_every_spiking_task(runs, method: str):
    evaluation, run = runs(method)
    metrics = {(r.task, r.metric): r.value for r in evaluation.rows}
    for task in ("co_smoothing", "forecasting", "inter_region", "intra_region"):
        assert np.isfinite(metrics[(task, "bps")]), task
        pred = evaluation.arrays[f"{task}/{evaluation.rows[0].session}/pred"]
        assert pred.shape[1] == 22 and np.nanmin(pred) > 0  # every bin, partial patch too
    assert 0 <= metrics[("choice", "bacc")] <= 1
    assert ("choice", "frozen_bacc") in metrics
    assert ("behavior_wheel_speed", "r2") in metrics
    log = pd.read_csv(run / "ft.csv")
    assert "query_poisson" in log.columns and np.isfinite(log["query_poisson"].dropna()).all()
    if method == "calm":
        assert "next_patch_poisson" in pd.read_csv(run / "pre.csv").columns


def test_co_smoothing_never_reads_the_held_out_units(spiking, runs):
    """Changing held-out units' counts leaves every co-smoothing prediction unchanged."""
    paths, splits, tokenizer = spiking
    run = runs("scratch_dual_axis")[1]
    hp = SPIKE_METHOD_HP | {"tokenizer_path": str(tokenizer)}
    inputs = StageInputs("toy", "scratch_dual_axis", "tiny", 0, paths, splits, SPIKE_TASKS, hp)
    network = make_method("scratch_dual_axis")._network(inputs, _hparams(inputs), "cpu",
                                                       restoring=True)  # fmt: skip
    # strict=False: the adapted weights (phase A) predate the decoding heads.
    network.load_state_dict(_load(run / "ft.pt", "finetune")["adapted"], strict=False)
    session = splits.heldout_sessions[0]
    batch = _batches(WindowDataset(paths, splits, "test", [session]))[0]
    held = np.zeros(batch["activity"].shape[2], dtype=bool)
    held[::4] = True
    hide = torch.from_numpy(query_hide(np.broadcast_to(~held, (22, held.size)), 4))
    hide = hide[None].expand(len(batch["activity"]), -1, -1)
    counts = torch.nn.functional.pad(batch["activity"], (0, 0, 0, 2))  # 22 bins -> 6 patches
    before = query_counts(network, dict(batch, activity=counts), hide)
    changed = counts.clone()
    changed[:, :, torch.from_numpy(held)] += 5
    torch.testing.assert_close(query_counts(network, dict(batch, activity=changed), hide), before)
    # ... while the same change, visible, does change them: the test can fail.
    shown = hide & torch.from_numpy(~held)
    seen = query_counts(network, dict(batch, activity=changed), shown)
    assert not torch.allclose(seen, query_counts(network, dict(batch, activity=counts), shown))
