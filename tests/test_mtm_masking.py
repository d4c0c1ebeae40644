"""Each MtM scheme hides and scores exactly the entries it claims; loss sees only targets."""

from __future__ import annotations

import pytest
import torch

from neurossl.models.ndt import NDT, make_config
from neurossl.objectives import mtm

B, T = 8, 50
REGIONS = torch.tensor([0] * 6 + [1] * 4 + [2] * 10)
N = REGIONS.numel()


def test_neuron_mask_ratio_and_shape():
    torch.manual_seed(0)
    masks = [mtm.neuron_mask(B, T, N, 0.3) for _ in range(200)]
    for m in masks[:5]:
        # a neuron is hidden at all bins or none, and targets are the hidden entries
        assert (m.hidden == m.hidden[:, :1]).all() and torch.equal(m.hidden, m.target)
    fraction = torch.stack([m.hidden.float().mean() for m in masks]).mean()
    assert abs(fraction - 0.3) < 0.02


def test_causal_mask_hides_last_bins():
    m = mtm.causal_mask(B, T, N, 0.6)
    assert m.causal
    assert not m.hidden[:, :20].any() and m.hidden[:, 20:].all()
    assert torch.equal(m.hidden, m.target)


def test_temporal_mask_ratio():
    torch.manual_seed(1)
    masks = [mtm.temporal_mask(B, T, N, 0.3) for _ in range(200)]
    assert all((m.hidden == m.hidden[:, :, :1]).all() for m in masks[:5])
    assert not masks[0].causal
    assert abs(torch.stack([m.hidden.float().mean() for m in masks]).mean() - 0.3) < 0.02


def test_inter_region_hides_and_scores_one_whole_region():
    torch.manual_seed(2)
    chosen = set()
    for _ in range(60):
        m = mtm.inter_region_mask(B, T, REGIONS)
        hidden = m.hidden[0, 0]
        region = int(REGIONS[hidden][0])
        assert torch.equal(hidden, region == REGIONS) and torch.equal(m.hidden, m.target)
        chosen.add(region)
    assert chosen == {0, 1, 2}
    with pytest.raises(ValueError, match=">= 2 regions"):
        mtm.inter_region_mask(B, T, torch.zeros(5, dtype=torch.long))


def test_intra_region_observes_one_region_and_scores_half_of_it():
    torch.manual_seed(3)
    for _ in range(60):
        m = mtm.intra_region_mask(B, T, REGIONS, 0.5)
        target = m.target[:, 0]  # [B, N]
        region = int(REGIONS[target[0]][0])
        inside = region == REGIONS
        assert not (target & ~inside).any()  # only the chosen region is scored
        assert (target.sum(1) == inside.sum() // 2).all()  # exactly half of it
        assert m.hidden[:, 0, ~inside].all()  # every other region is hidden
        assert torch.equal(m.hidden[:, 0, inside], target[:, inside])  # rest of r visible
        assert (m.hidden == m.hidden[:, :1]).all()


def test_available_schemes_follow_regions():
    one_region = torch.zeros(4, dtype=torch.long)
    singletons = torch.arange(4)
    assert mtm.available_schemes(mtm.SCHEMES, one_region) == ["neuron", "causal", "intra_region"]
    assert mtm.available_schemes(mtm.SCHEMES, singletons) == ["neuron", "causal", "inter_region"]


def test_loss_counts_only_target_entries():
    torch.manual_seed(4)
    counts = torch.poisson(torch.full((B, T, N), 2.0))
    log_rates = torch.randn(B, T, N)
    target = mtm.neuron_mask(B, T, N, 0.3).target
    loss = mtm.masked_poisson_nll(log_rates, counts, target)
    changed = log_rates.clone()
    changed[~target] = 10.0  # predictions off target must not matter
    assert torch.equal(loss, mtm.masked_poisson_nll(changed, counts, target))
    changed[target] += 0.5
    assert not torch.equal(loss, mtm.masked_poisson_nll(changed, counts, target))
    expected = (log_rates.exp() - counts * log_rates)[target].mean()
    torch.testing.assert_close(loss, expected)


def test_hidden_inputs_reach_the_model_as_zeros():
    """The model never sees hidden entries: changing them leaves the loss unchanged."""
    torch.manual_seed(5)
    model = NDT(make_config("tiny", n_prompts=4, dropout=0.0), {"s0": N})
    # intra_region is the scheme whose hidden entries are not all scored
    loss_fn = mtm.MaskedModelingLoss(["intra_region"], mtm.MaskRatios(), True, ["s0"])
    counts = torch.poisson(torch.full((B, T, N), 1.0))
    batch = {
        "activity": counts,
        "neuron_mask": torch.ones(B, N, dtype=torch.bool),
        "session": torch.zeros(B, dtype=torch.long),
        "region": REGIONS.expand(B, N),
    }
    torch.manual_seed(6)
    loss, info = loss_fn(model, batch)
    torch.manual_seed(6)
    int(torch.randint(1, (1,)))  # the loss draws its scheme first
    mask = mtm.draw_mask("intra_region", B, T, REGIONS, mtm.MaskRatios())
    assert info["scheme"] == mtm.SCHEMES.index("intra_region")
    assert (mask.hidden & ~mask.target).any()
    hidden_only = counts.clone()
    hidden_only[mask.hidden & ~mask.target] = 99.0  # hidden, unscored entries
    torch.manual_seed(6)
    again, _ = loss_fn(model, dict(batch, activity=hidden_only))
    torch.testing.assert_close(loss, again)
    visible_changed = counts.clone()
    visible_changed[~mask.hidden] += 5.0
    torch.manual_seed(6)
    assert not torch.allclose(loss, loss_fn(model, dict(batch, activity=visible_changed))[0])


def test_causal_attention_ignores_the_future():
    torch.manual_seed(7)
    model = NDT(make_config("tiny", n_prompts=4, dropout=0.0), {"s0": N}).eval()
    x = torch.poisson(torch.full((2, T, N), 1.0))
    y = x.clone()
    y[:, 30:] += 3.0
    with torch.no_grad():
        a = model(x, "s0", prompt=1, causal=True)
        b = model(y, "s0", prompt=1, causal=True)
        c = model(y, "s0", prompt=1, causal=False)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, :30], c[:, :30])
