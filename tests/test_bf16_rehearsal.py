"""The GPU's bf16 code paths, rehearsed on CPU: every family pretrains, fine-tunes and
evaluates a few steps under CPU bf16 autocast (``NEUROSSL_CPU_BF16=1``).

Why: on a GPU the engine, the evaluation passes and the benchmarks run under bf16
autocast, which CPU tests never exercise in fp32; a dtype mismatch there (a bf16 output
fed to numpy, a float32 buffer meeting a bf16 activation in an in-place op) would stop a
user's first GPU job. CPU autocast casts the same matmul-type ops to bf16 as CUDA's
(its op lists are similar, not identical), so these tests catch such mismatches on any
machine. A forward hook checks that bf16 was really computed in every stage, so a
rehearsal that silently ran in fp32 fails. The same tests run on CUDA (``gpu`` marker,
benchmarks/gpu_check.sh) where a GPU is visible: there they are the final word.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_calm_family import METHOD_HP, TOKENIZER_HP
from test_calm_family import dataset as calm_dataset  # noqa: F401 (fixture)
from test_calm_spikes import SPIKE_METHOD_HP, SPIKE_TOKENIZER_HP
from test_loader import make_dataset
from test_poyo_family import FAST as POYO_FAST
from test_poyo_family import build_dataset as build_calcium

from neurossl.contract import StageInputs, StageOutputs
from neurossl.device import CPU_BF16_ENV, autocast, autocast_dtype
from neurossl.methods.calm_family import train_tokenizer
from neurossl.methods.registry import get_method

NDT_FAST = {
    "pretrain_steps": 4,
    "max_steps": 4,
    "stitch_steps": 2,
    "decode_steps": 2,
    "eval_every": 2,
    "checkpoint_every": 2,
}
#: The CPU rehearsal everywhere; the real thing where a GPU is visible.
DEVICES = [pytest.param("cpu", id="cpu-bf16"), pytest.param("cuda", marks=pytest.mark.gpu)]
SPIKING_TASKS = ("co_smoothing", "forecasting", "choice", "behavior_wheel_speed")
CALCIUM_TASKS = ("forecasting", "stimulus_class", "choice", "behavior_running_speed")


class _Bf16Seen:
    """Counts module outputs computed in bf16 while installed (a global forward hook)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, module: torch.nn.Module, args: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dtype == torch.bfloat16:
            self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def bf16(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Bf16Seen]:
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seen = _Bf16Seen()
    handle = torch.nn.modules.module.register_module_forward_hook(seen)
    yield seen
    handle.remove()
    torch.set_num_threads(threads)


def _stages(method: str, inputs: StageInputs, root: Path, seen: _Bf16Seen) -> list:
    impl = get_method(method)
    pre = None
    if impl.pretrains:
        pre = StageOutputs(root / "pre" / "model.pt", root / "pre" / "log.csv", root / "pre" / "ck")
        impl.pretrain(inputs, pre)
        assert seen.take() > 0, f"{method} pretraining computed nothing in bf16"
    fine = StageOutputs(root / "ft" / "model.pt", root / "ft" / "log.csv", root / "ft" / "ck")
    impl.finetune(inputs, None if pre is None else pre.model, fine)
    assert seen.take() > 0, f"{method} fine-tuning computed nothing in bf16"
    evaluation = impl.evaluate(inputs, fine.model)
    assert seen.take() > 0, f"{method} evaluation computed nothing in bf16"
    assert evaluation.rows, f"{method} evaluation scored nothing"
    assert all(math.isfinite(r.value) for r in evaluation.rows), evaluation.rows
    for key, array in evaluation.arrays.items():
        assert np.asarray(array).dtype != object, key
    return evaluation.rows


def test_switch_turns_bf16_on_for_cuda_and_for_the_cpu_rehearsal(monkeypatch) -> None:
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    assert autocast_dtype("cpu") is None and autocast_dtype("cuda:1") == torch.bfloat16
    x = torch.ones(2, 2)
    with autocast("cpu"):
        assert (x @ x).dtype == torch.float32
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    with autocast("cpu"):
        assert (x @ x).dtype == torch.bfloat16


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["mtm", "scratch_ndt"])
def test_ndt_family_under_bf16(tmp_path: Path, bf16: _Bf16Seen, method: str, device: str) -> None:
    paths, splits = make_dataset(tmp_path / "data", n_trials=20)
    inputs = StageInputs("toy", method, "tiny", 0, paths, splits, SPIKING_TASKS, NDT_FAST, device)
    rows = _stages(method, inputs, tmp_path, bf16)
    assert {"co_smoothing", "forecasting", "choice"} <= {r.task for r in rows}


@pytest.mark.parametrize("device", DEVICES)
def test_mtm_on_calcium_under_bf16(tmp_path: Path, bf16: _Bf16Seen, calm_dataset, device) -> None:  # noqa: F811
    paths, splits = calm_dataset
    hp = NDT_FAST | {"context": 16, "horizon": 8}
    inputs = StageInputs("tiny", "mtm", "tiny", 0, paths, splits, CALCIUM_TASKS, hp, device)
    rows = _stages("mtm", inputs, tmp_path, bf16)
    assert {"mae_h8", "bacc", "frozen_r2"} <= {r.metric for r in rows}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["poyo_ssl", "scratch_perceiver"])
def test_poyo_family_under_bf16(tmp_path: Path, bf16: _Bf16Seen, method: str, device: str) -> None:
    paths, splits = build_calcium(tmp_path / "data")
    hp = POYO_FAST | {"unit_id_steps": 2}
    inputs = StageInputs("tiny", method, "tiny", 0, paths, splits, CALCIUM_TASKS, hp, device)
    rows = _stages(method, inputs, tmp_path, bf16)
    assert {"forecasting", "stimulus_class", "behavior_running_speed"} <= {r.task for r in rows}


@pytest.mark.parametrize("device", DEVICES)
def test_poyo_ssl_on_spikes_under_bf16(tmp_path: Path, bf16: _Bf16Seen, device: str) -> None:
    paths, splits = make_dataset(tmp_path / "data", n_trials=20)
    hp = POYO_FAST | {"unit_id_steps": 2}
    inputs = StageInputs("toy", "poyo_ssl", "tiny", 0, paths, splits, SPIKING_TASKS, hp, device)
    rows = _stages("poyo_ssl", inputs, tmp_path, bf16)
    assert {"co_smoothing", "forecasting", "choice"} <= {r.task for r in rows}


@pytest.mark.parametrize("device", DEVICES)
def test_calm_family_under_bf16(tmp_path: Path, bf16: _Bf16Seen, calm_dataset, device) -> None:  # noqa: F811
    paths, splits = calm_dataset
    tok_hp = TOKENIZER_HP | {"steps": 5, "vocab_sweep": [16], "alternative_quantizer": "none"}
    tok_inputs = StageInputs(
        "tiny", "calm", "tiny", 0, paths, splits, CALCIUM_TASKS, tok_hp, device
    )
    train_tokenizer(tok_inputs, tmp_path / "tok.pt", tmp_path / "tok.json")
    assert bf16.take() > 0, "the tokenizer's fit computed nothing in bf16"
    hp = METHOD_HP | {"tokenizer_path": str(tmp_path / "tok.pt"), "pretrain_steps": 3}
    inputs = StageInputs("tiny", "calm", "tiny", 0, paths, splits, CALCIUM_TASKS, hp, device)
    rows = _stages("calm", inputs, tmp_path, bf16)
    assert {"forecasting", "stimulus_class"} <= {r.task for r in rows}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["rnn", "poco"])
def test_trained_forecasters_under_bf16(bf16: _Bf16Seen, method: str, device: str) -> None:
    """The engine trains them under autocast; prediction stays fp32 on the CPU."""
    from neurossl.baselines.forecasters import make_forecaster

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((24, 12, 3)), axis=1)
    forecaster = make_forecaster(method, {"hidden": 8, "steps": 4, "lr": 1e-3, "batch_size": 8})
    forecaster.fit(x[:, :8], x[:, 8:], seed=0, device=device)
    assert bf16.take() > 0, f"{method}'s fit computed nothing in bf16"
    assert np.isfinite(forecaster.predict(x[:, :8])).all()


@pytest.mark.parametrize("device", DEVICES)
def test_calm_on_spikes_under_bf16(tmp_path: Path, bf16: _Bf16Seen, device: str) -> None:
    paths, splits = make_dataset(tmp_path / "data", n_trials=20, trial_bins=22)
    tok_inputs = StageInputs("toy", "calm", "tiny", 0, paths, splits, (), SPIKE_TOKENIZER_HP,
                             device)  # fmt: skip
    train_tokenizer(tok_inputs, tmp_path / "tok.pt", tmp_path / "tok.json")
    bf16.take()
    hp = SPIKE_METHOD_HP | {"tokenizer_path": str(tmp_path / "tok.pt")}
    inputs = StageInputs("toy", "calm", "tiny", 0, paths, splits, SPIKING_TASKS, hp, device)
    rows = _stages("calm", inputs, tmp_path, bf16)
    assert {"co_smoothing", "forecasting", "choice"} <= {r.task for r in rows}
