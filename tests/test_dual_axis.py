"""The dual-axis transformer's structural guarantees: causal in time, equivariant over
neurons, blind to padding; and the next-code loss and rollout built on it."""

from __future__ import annotations

import pytest
import torch

from neurossl.models.dual_axis import DualAxisConfig, DualAxisTransformer, preset
from neurossl.objectives.calm import next_token_loss

torch.set_num_threads(1)
K, UNITS, SESSIONS = 16, 40, 3


def _model(seed: int = 0) -> DualAxisTransformer:
    torch.manual_seed(seed)
    config = DualAxisConfig(K, UNITS, SESSIONS, width=16, layers=2, heads=2, mlp_ratio=2)
    return DualAxisTransformer(config).eval()


def _inputs(b: int, t: int, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, K, (b, t, n), generator=g)
    unit = torch.randint(0, UNITS, (b, n), generator=g)
    session = torch.randint(0, SESSIONS, (b,), generator=g)
    return codes, unit, session


def test_time_axis_is_causal_exactly() -> None:
    model = _model()
    codes, unit, session = _inputs(2, 10, 6)
    t0 = 6
    changed = codes.clone()
    changed[:, t0:] = (changed[:, t0:] + 1 + torch.randint(0, K - 1, changed[:, t0:].shape)) % K
    with torch.no_grad():
        _, before = model(codes, unit, session)
        _, after = model(changed, unit, session)
    assert torch.equal(before[:, :t0], after[:, :t0])
    assert not torch.allclose(before[:, t0:], after[:, t0:])


def test_neuron_axis_is_permutation_equivariant() -> None:
    model = _model()
    codes, unit, session = _inputs(2, 7, 9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h, logits = model(codes, unit, session)
        h_p, logits_p = model(codes[:, :, perm], unit[:, perm], session)
    torch.testing.assert_close(logits_p, logits[:, :, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_p, h[:, :, perm], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_sessions_outputs() -> None:
    model = _model()
    small, unit_s, ses_s = _inputs(1, 8, 5, seed=4)
    big, unit_b, ses_b = _inputs(1, 8, 9, seed=5)
    with torch.no_grad():
        _, alone = model(small, unit_s, ses_s, torch.ones(1, 5, dtype=torch.bool))
        padded = torch.zeros(1, 8, 9, dtype=torch.long)
        padded[:, :, :5] = small
        pad_unit = torch.zeros(1, 9, dtype=torch.long)
        pad_unit[:, :5] = unit_s
        mask = torch.zeros(2, 9, dtype=torch.bool)
        mask[0, :5], mask[1] = True, True
        _, both = model(
            torch.cat([padded, big]),
            torch.cat([pad_unit, unit_b]),
            torch.cat([ses_s, ses_b]),
            mask,
        )
    torch.testing.assert_close(both[0, :, :5], alone[0], atol=1e-5, rtol=1e-5)


def test_next_token_loss_ignores_padding_and_targets_the_next_step() -> None:
    logits = torch.randn(2, 5, 4, K)
    codes = torch.randint(0, K, (2, 5, 4))
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    loss, _ = next_token_loss(logits, codes, mask)
    noisy_logits, noisy_codes = logits.clone(), codes.clone()
    noisy_logits[0, :, 2:] = torch.randn_like(noisy_logits[0, :, 2:])
    noisy_codes[0, :, 2:] = (noisy_codes[0, :, 2:] + 1) % K
    assert torch.equal(next_token_loss(noisy_logits, noisy_codes, mask)[0], loss)
    # A model that puts all mass on the code of the *next* step has zero loss.
    perfect = torch.full((2, 5, 4, K), -1e4)
    perfect[:, :-1].scatter_(-1, codes[:, 1:, :, None], 1e4)
    assert next_token_loss(perfect, codes, mask)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_presets_and_config_errors() -> None:
    assert preset("base") == {"width": 256, "layers": 8, "heads": 8, "mlp_ratio": 4}
    with pytest.raises(ValueError, match="unknown dual-axis size"):
        preset("huge")
    with pytest.raises(ValueError, match="heads of even size"):
        DualAxisConfig(K, UNITS, SESSIONS, width=30, heads=4)


def test_value_input_keeps_the_time_axis_causal() -> None:
    """The continuous input enters token by token, so outputs before t ignore values at t."""
    torch.manual_seed(0)
    model = DualAxisTransformer(DualAxisConfig(K, UNITS, SESSIONS, value_patch=4)).eval()
    codes, unit, session = torch.randint(0, K, (2, 6, 5)), torch.randint(0, UNITS, (2, 5)), \
        torch.tensor([0, 1])  # fmt: skip
    values = torch.randn(2, 6, 5, 4)
    changed = values.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        h1, _ = model(codes, unit, session, None, values)
        h2, _ = model(codes, unit, session, None, changed)
    torch.testing.assert_close(h1[:, :4], h2[:, :4])
    assert not torch.allclose(h1[:, 4:], h2[:, 4:])
    with pytest.raises(ValueError, match="value_patch"):
        model(codes, unit, session)
