"""CalM tokenizer: shapes, causal encoding, honest report, and that both quantisers learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurossl.eval.metrics import r2
from neurossl.models.quantizers import fsq_levels, orthogonality_loss
from neurossl.models.tokenizer import (
    Tokenizer,
    TokenizerConfig,
    load_tokenizer,
    reconstruct,
    save_tokenizer,
)
from neurossl.objectives.tokenizer import FitConfig, fit_tokenizer, tokenizer_report

torch.set_num_threads(1)
#: Stated bounds: a tiny tokenizer trained for 150 steps reconstructs smooth traces with
#: R^2 above these on held-out windows. FSQ measured 0.95-0.97; Gumbel's R^2 depends on
#: the seed (0.77-0.93 over seeds 0-23, median 0.90; docs/engine.md), so its bound sits
#: below the spread and still far above an untrained tokenizer's.
SMOOTH_R2_BOUND = {"gumbel": 0.75, "fsq": 0.9}


def smooth_traces(windows: int, frames: int, neurons: int, seed: int) -> np.ndarray:
    """Z-scored sums of two slow sinusoids per neuron, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[None, :, None]
    out = np.zeros((windows, frames, neurons))
    for _ in range(2):
        freq = rng.uniform(0.02, 0.12, size=(windows, 1, neurons))
        phase = rng.uniform(0, 2 * np.pi, size=(windows, 1, neurons))
        out += rng.uniform(0.5, 1.5, size=(windows, 1, neurons)) * np.sin(
            2 * np.pi * freq * t + phase
        )
    out += 0.05 * rng.standard_normal(out.shape)
    return ((out - out.mean()) / out.std()).astype(np.float32)


def tiny_config(quantizer: str, vocab_size: int = 64) -> TokenizerConfig:
    return TokenizerConfig(
        patch=4, vocab_size=vocab_size, quantizer=quantizer, width=16, heads=2, layers=1
    )


def test_encode_decode_shapes_and_range() -> None:
    tok = Tokenizer(tiny_config("gumbel")).eval()
    traces = torch.from_numpy(smooth_traces(3, 18, 5, seed=0))
    codes = tok.encode(traces)
    assert codes.shape == (3, 4, 5) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    assert tok.decode(codes).shape == (3, 16, 5)
    with pytest.raises(ValueError, match=r"traces \[B, T, N\]"):
        tok.encode(traces[0])


@pytest.mark.parametrize("quantizer", ["gumbel", "fsq"])
def test_encoding_is_causal_over_patches(quantizer: str) -> None:
    torch.manual_seed(0)
    tok = Tokenizer(tiny_config(quantizer)).eval()
    traces = torch.from_numpy(smooth_traces(2, 32, 4, seed=1))
    full = tok.encode(traces)
    prefix = tok.encode(traces[:, :16])
    assert torch.equal(full[:, :4], prefix)
    # ...and decoding more codes never changes the decoded prefix.
    torch.testing.assert_close(tok.decode(full)[:, :16], tok.decode(prefix))


@pytest.mark.parametrize("quantizer", ["gumbel", "fsq"])
def test_trained_tokenizer_reconstructs_smooth_traces(quantizer: str) -> None:
    train = smooth_traces(64, 32, 8, seed=2)
    test = smooth_traces(16, 32, 8, seed=3)
    untrained = tokenizer_report(Tokenizer(tiny_config(quantizer)), test)
    tok = fit_tokenizer(
        train, tiny_config(quantizer), FitConfig(steps=150, batch_size=32, lr=5e-3, seed=0)
    )
    report = tokenizer_report(tok, test)
    assert report["r2"] > SMOOTH_R2_BOUND[quantizer] > untrained["r2"]
    assert 1.0 <= report["perplexity"] <= 64.0
    assert 0.0 < report["code_usage"] <= 1.0


def test_report_matches_a_direct_recomputation_and_ignores_padding() -> None:
    torch.manual_seed(0)
    tok = Tokenizer(tiny_config("fsq")).eval()
    traces = smooth_traces(6, 22, 5, seed=4)  # 22 frames: the last 2 are not a whole patch
    traces[:2, :, 3:] = np.nan  # two windows of a session with 3 neurons
    report = tokenizer_report(tok, traces)
    recon, codes = reconstruct(tok, traces)
    assert np.isnan(recon[:, 20:]).all() and np.isnan(recon[:2, :, 3:]).all()
    with torch.no_grad():
        direct = tok.decode(tok.encode(torch.from_numpy(np.nan_to_num(traces)))).numpy()
    target = traces[:, :20].copy()
    expected = r2(direct.reshape(-1, 5), target.reshape(-1, 5))
    assert report["r2"] == pytest.approx(expected, rel=1e-6)
    real_codes = np.concatenate([codes[:2, :, :3].ravel(), codes[2:].ravel()])
    assert report["code_usage"] == pytest.approx(np.unique(real_codes).size / 64)


def test_fsq_levels_and_orthogonality_penalty() -> None:
    assert fsq_levels(16) == [4, 4]
    assert fsq_levels(64) == [8, 8]
    assert np.prod(fsq_levels(256)) == 256 and max(fsq_levels(256)) <= 8
    with pytest.raises(ValueError, match="FSQ cannot build"):
        fsq_levels(22)
    assert orthogonality_loss(torch.eye(4, 8)).item() == pytest.approx(0.0, abs=1e-7)
    collapsed = torch.ones(4, 8)
    assert orthogonality_loss(collapsed).item() == pytest.approx(12 / 16)


def test_checkpoint_round_trip_and_bad_file(tmp_path) -> None:
    tok = Tokenizer(tiny_config("gumbel")).eval()
    save_tokenizer(tok, tmp_path / "tok.pt", {"r2": 0.5})
    loaded = load_tokenizer(tmp_path / "tok.pt")
    x = torch.from_numpy(smooth_traces(2, 16, 3, seed=5))
    assert torch.equal(loaded.encode(x), tok.encode(x))
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a CalM tokenizer checkpoint"):
        load_tokenizer(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="run the tokenizer stage"):
        load_tokenizer(tmp_path / "missing.pt")
