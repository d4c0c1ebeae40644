"""Before/after numbers of the short fits that run through the training engine.

Prints JSON: the tokenizer's reconstruction R^2 and perplexity, CalM's head probe
(final training loss, test loss and accuracy) and the RNN/POCO forecasters' test MAE,
each on fixed tiny data for seeds 0-2, so a change of the loop they run in can be
compared with run-to-run noise (docs/engine.md). Run from the repository root:
``PYTHONPATH=src python benchmarks/engine_fits.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SEEDS = (0, 1, 2)


def tokenizer_numbers(seed: int) -> dict[str, float]:
    from test_tokenizer import smooth_traces, tiny_config

    from neurossl.objectives.tokenizer import FitConfig, fit_tokenizer, tokenizer_report

    train, test = smooth_traces(64, 32, 8, seed=2), smooth_traces(16, 32, 8, seed=3)
    out = {}
    for quantizer in ("gumbel", "fsq"):
        fit = FitConfig(steps=150, batch_size=32, lr=5e-3, seed=seed)
        report = tokenizer_report(fit_tokenizer(train, tiny_config(quantizer), fit), test)
        out[f"tokenizer_{quantizer}_r2"] = report["r2"]
        out[f"tokenizer_{quantizer}_perplexity"] = report["perplexity"]
    return out


def probe_numbers(seed: int, root: Path) -> dict[str, float]:
    from test_calm_family import METHOD_HP, TASKS, _session, _windows

    from neurossl.contract import StageInputs
    from neurossl.data.loader import WindowDataset
    from neurossl.data.session import write_session
    from neurossl.data.splits import Splits
    from neurossl.methods.calm_family import _batches, _head_specs, _hparams, make_method
    from neurossl.models.tokenizer import Tokenizer, TokenizerConfig, save_tokenizer
    from neurossl.objectives.calm import head_losses, head_outputs, probe_heads
    from neurossl.train.runtime import seed_everything

    paths = {}
    for i, (name, subject, n) in enumerate([("a-1", "a", 6), ("c-1", "c", 7)]):
        paths[name] = root / f"{name}.calcium.h5"
        write_session(_session(name, subject, n, seed=i), paths[name])
    splits = Splits("tiny", 0, ["a-1"], ["c-1"], {k: _windows() for k in paths}, {}, {})
    torch.manual_seed(0)
    save_tokenizer(Tokenizer(TokenizerConfig(patch=4, vocab_size=16, width=16)).eval(),
                   root / "tok.pt", {})  # fmt: skip
    hp_in = {**METHOD_HP, "tokenizer_path": str(root / "tok.pt")}
    inputs = StageInputs("tiny", "scratch_dual_axis", "tiny", seed, paths, splits, TASKS, hp_in,
                         "cpu")  # fmt: skip
    hp = _hparams(inputs)
    seed_everything(seed)
    method = make_method("scratch_dual_axis")
    train_set = WindowDataset(paths, splits, "train", ["c-1"])
    heads = _head_specs(inputs, train_set, method.supported_tasks(TASKS))
    network = method._network(inputs, hp, "cpu", heads)
    history = probe_heads(network, _batches(train_set), int(hp["probe_steps"]),
                          float(hp["probe_lr"]), float(hp["probe_weight_decay"]))  # fmt: skip
    test = _batches(WindowDataset(paths, splits, "test", ["c-1"]))
    network.eval()
    # The probe returned its loss per step before it ran in the engine (a TrainResult).
    out = {"probe_train_loss": history[-1] if isinstance(history, list) else history.last_loss}
    with torch.no_grad():
        for batch in test:
            outputs = head_outputs(network, network(batch)["hidden"].float(), batch["unit"],
                                   batch["neuron_mask"])  # fmt: skip
            losses = head_losses(network, outputs, batch)
            out["probe_test_loss"] = float(sum(losses.values()))
            for spec in heads:
                if spec.label_key:
                    pred = np.asarray(spec.classes)[outputs[spec.task].argmax(1).numpy()]
                    label = batch[spec.label_key].numpy()
                    out[f"probe_{spec.task}_accuracy"] = float(np.mean(pred == label))
    return out


def forecaster_numbers(seed: int) -> dict[str, float]:
    from neurossl.baselines.forecasters import make_forecaster

    rng = np.random.default_rng(7)
    n, frames, windows, c, h = 6, 48, 40, 16, 8
    latent = np.zeros((windows, frames))
    for t in range(1, frames):
        latent[:, t] = 0.9 * latent[:, t - 1] + rng.standard_normal(windows)
    x = latent[:, :, None] * rng.normal(size=n) + 0.3 * rng.standard_normal((windows, frames, n))
    pairs = [(w, s) for w in range(windows) for s in range(0, frames - c - h + 1, 4)]
    context = np.stack([x[w, s : s + c] for w, s in pairs])
    future = np.stack([x[w, s + c : s + c + h] for w, s in pairs])
    train = np.array([w < 30 for w, _ in pairs])
    out = {}
    for method in ("rnn", "poco"):
        hp = {"hidden": 32, "steps": 200, "lr": 3e-3, "batch_size": 64}
        model = make_forecaster(method, hp)
        model.fit(context[train], future[train], seed, "cpu")
        pred = model.predict(context[~train])
        out[f"{method}_mae"] = float(np.mean(np.abs(pred - future[~train])))
    return out


def main() -> None:
    import tempfile

    torch.set_num_threads(1)
    rows = {}
    for seed in SEEDS:
        with tempfile.TemporaryDirectory() as tmp:
            row = {**tokenizer_numbers(seed), **probe_numbers(seed, Path(tmp))}
        rows[seed] = {**row, **forecaster_numbers(seed)}
    print(json.dumps(rows, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
