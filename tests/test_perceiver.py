"""The Perceiver backbone: padding, relative time, growing vocabularies, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurossl.data.loader import collate_windows
from neurossl.models.perceiver import (
    CLASSIFICATION,
    PER_BIN,
    PRESETS,
    RECONSTRUCTION,
    Perceiver,
    backbone_parameters,
    count_parameters,
    make_config,
)
from neurossl.models.rotary import RotaryTime, rotate

TASKS = (RECONSTRUCTION, "stimulus_class", "behavior_running_speed")
ATOL = 1e-5


def _model(seed: int = 0) -> Perceiver:
    torch.manual_seed(seed)
    model = Perceiver(make_config("tiny", latents_per_chunk=2), n_units=12, n_sessions=3)
    model.add_task("stimulus_class", CLASSIFICATION, 3, n_slots=2)  # 9 bins at 30 Hz: 2 chunks
    model.add_task("behavior_running_speed", PER_BIN, 1)
    return model.eval()


def _item(rng: np.random.Generator, session: int, units: list[int], n_bins: int = 9) -> dict:
    return {
        "activity": rng.normal(size=(n_bins, len(units))).astype(np.float32),
        "session": session,
        "unit": np.array(units, dtype=np.int64),
        "region": np.zeros(len(units), dtype=np.int64),
        "time": (np.arange(n_bins) / 30).astype(np.float32),
        "behavior": rng.normal(size=(n_bins, 1)).astype(np.float32),
    }


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_padding_gives_the_same_outputs_as_batching_alone() -> None:
    rng = np.random.default_rng(0)
    small = _item(rng, session=0, units=[0, 1, 2])
    large = _item(rng, session=1, units=[3, 4, 5, 6, 7, 8, 9])
    model = _model()
    with torch.no_grad():
        mixed = model(collate_windows([small, large]), TASKS)
        alone = model(collate_windows([small]), TASKS)
        mixed_rev = model(collate_windows([large, small]), TASKS)
        alone_large = model(collate_windows([large]), TASKS)
    for task in TASKS:
        got = mixed[task][0]
        if task == RECONSTRUCTION:
            got = got[:, :3]  # the padded neurons' outputs are not defined
        torch.testing.assert_close(got, alone[task][0], atol=ATOL, rtol=0)
        torch.testing.assert_close(mixed_rev[task][1][..., : got.shape[-1]], got, atol=ATOL, rtol=0)
        torch.testing.assert_close(mixed_rev[task][0], alone_large[task][0], atol=ATOL, rtol=0)
    # Padded values must not leak: changing them leaves the real outputs unchanged.
    batch = collate_windows([small, large])
    batch["activity"][0, :, 3:] = 1e3
    with torch.no_grad():
        poisoned = model(batch, TASKS)
    torch.testing.assert_close(
        poisoned["stimulus_class"], mixed["stimulus_class"], atol=ATOL, rtol=0
    )


def test_outputs_depend_on_relative_time_only() -> None:
    rng = np.random.default_rng(1)
    item = _item(rng, session=2, units=[1, 5, 7, 11])
    shifted = dict(item, time=item["time"] + np.float32(3.7))
    model = _model()
    with torch.no_grad():
        a = model(collate_windows([item]), TASKS)
        b = model(collate_windows([shifted]), TASKS)
    for task in TASKS:
        torch.testing.assert_close(a[task], b[task], atol=1e-4, rtol=0)


def test_rotation_is_undone_by_its_inverse_and_keeps_the_rest() -> None:
    rotary = RotaryTime(dim_head=8, t_min=0.05, t_max=4.0)
    x = torch.randn(2, 3, 5, 8)
    rotation = rotary(torch.rand(2, 5) * 2)
    y = rotate(x, rotation)
    assert not torch.allclose(y[..., :4], x[..., :4])
    torch.testing.assert_close(y[..., 4:], x[..., 4:])
    torch.testing.assert_close(rotate(y, rotation, inverse=True), x, atol=1e-6, rtol=0)


def test_masked_tokens_hide_their_values() -> None:
    rng = np.random.default_rng(2)
    batch = collate_windows([_item(rng, session=0, units=[0, 1, 2])])
    mask = torch.zeros(1, 9, 3, dtype=torch.bool)
    mask[0, 2:5, 1] = True
    model = _model()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["activity"][mask] += 5.0
    with torch.no_grad():
        a = model(batch, TASKS, mask)
        b = model(changed, TASKS, mask)
        c = model(changed, TASKS)
    torch.testing.assert_close(a["stimulus_class"], b["stimulus_class"])
    assert not torch.allclose(a["stimulus_class"], c["stimulus_class"])
    # Reconstruction with a mask returns values at masked tokens and 0 elsewhere.
    assert (a[RECONSTRUCTION][~mask] == 0).all() and (a[RECONSTRUCTION][mask] != 0).all()


def test_growing_vocabularies_keep_existing_rows_and_parameters() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.extend_units(4) == "unit_embed.blocks.1"
    assert model.extend_sessions(2) == "session_embed.blocks.1"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.unit_embed.num_embeddings == 16 and model.session_embed.num_embeddings == 5
    rng = np.random.default_rng(3)
    batch = collate_windows([_item(rng, session=4, units=[12, 15])])  # only new rows
    out = model(batch, TASKS)
    out["stimulus_class"].sum().backward()
    assert model.unit_embed.blocks[0].grad is None or not model.unit_embed.blocks[0].grad.any()
    assert model.unit_embed.blocks[1].grad.any()


def test_spec_round_trip_rebuilds_the_same_model() -> None:
    model = _model()
    model.extend_units(3)
    rebuilt = Perceiver.from_spec(model.spec())
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    rng = np.random.default_rng(4)
    batch = collate_windows([_item(rng, session=1, units=[0, 13, 14])])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(batch, TASKS), model(batch, TASKS))
    with pytest.raises(ValueError, match="malformed Perceiver spec"):
        Perceiver.from_spec({"config": {}})


def test_presets_scale_several_fold_and_match_published_shapes() -> None:
    sizes = [count_parameters(s) for s in ("tiny", "small", "medium")]
    assert sizes[1] > 2 * sizes[0] and sizes[2] > 2 * sizes[1]
    s, large = PRESETS["published_s"], PRESETS["published_l"]
    assert (s.dim, s.depth, s.latents_per_chunk) == (64, 6, 16)
    assert (large.dim, large.depth, large.latents_per_chunk) == (128, 24, 32)
    # Per-dataset tables do not count towards the backbone size.
    assert backbone_parameters(Perceiver(make_config("tiny"), 500, 9)) == sizes[0]


def test_bad_configuration_and_tasks_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown Perceiver size 'huge'"):
        make_config("huge")
    with pytest.raises(ValueError, match="heads"):
        make_config("tiny", heads=3)
    model = _model()
    with pytest.raises(ValueError, match="registered as"):
        model.add_task("stimulus_class", CLASSIFICATION, 5, n_slots=2)
    with pytest.raises(ValueError, match="window length differs"):
        model(collate_windows([_item(np.random.default_rng(5), 0, [0], n_bins=20)]), TASKS)
    with pytest.raises(ValueError, match="reach"):
        make_config("tiny", reach=0.1)
    with pytest.raises(KeyError, match="no head for task"):
        model(collate_windows([_item(np.random.default_rng(5), 0, [0])]), ("choice",))


def test_set_task_keeps_a_matching_head_and_replaces_another() -> None:
    model = _model()
    head = model.heads["stimulus_class"].weight.detach().clone()
    model.set_task("stimulus_class", CLASSIFICATION, 3, n_slots=2)  # a pretrained head: kept
    assert torch.equal(model.heads["stimulus_class"].weight, head)
    model.set_task("stimulus_class", CLASSIFICATION, 5, n_slots=2)  # other classes: fresh
    assert model.task_specs["stimulus_class"] == (CLASSIFICATION, 5, 2)
    assert model.heads["stimulus_class"].weight.shape == (5, 2 * model.config.dim)
    assert Perceiver.from_spec(model.spec()).task_specs == model.task_specs


def test_tokens_pool_frames_and_reconstruct_every_sample() -> None:
    model = _model()
    assert model.config.frames_per_token == 3
    rng = np.random.default_rng(6)
    batch = collate_windows([_item(rng, session=0, units=[0, 1], n_bins=10)])  # 10 = 3*3 + 1
    with torch.no_grad():
        full = model(batch, (RECONSTRUCTION,))[RECONSTRUCTION]
    assert full.shape == (1, 10, 2) and (full != 0).all()
    # A sample of a token is hidden with its whole token: changing the token's other
    # samples must not change what the model sees.
    mask = torch.zeros(1, 10, 2, dtype=torch.bool)
    mask[0, 3, 1] = True
    changed = {k: v.clone() for k, v in batch.items()}
    changed["activity"][0, 4:6, 1] += 5.0
    with torch.no_grad():
        a = model(batch, ("behavior_running_speed",), mask)
        b = model(changed, ("behavior_running_speed",), mask)
    torch.testing.assert_close(a, b)


def _planted_windows(rng: np.random.Generator, n: int) -> tuple[dict, torch.Tensor]:
    """Windows of 6 neurons over 1 s at 30 Hz whose class says *when* neuron 0 fires."""
    labels = rng.integers(0, 4, n)
    items = []
    for label in labels:
        item = _item(rng, session=0, units=list(range(6)), n_bins=30)
        item["activity"] *= 0.5
        item["activity"][label * 7 : label * 7 + 6, 0] += 2.0
        items.append(item)
    return collate_windows(items), torch.as_tensor(labels)


def test_decoding_learns_a_planted_timing_task_well_above_chance() -> None:
    """Guards against readouts that average time away (they stay at chance here)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    model = Perceiver(make_config("tiny"), n_units=6, n_sessions=1)
    model.add_task("stimulus_class", CLASSIFICATION, 4, n_slots=4)
    train, train_labels = _planted_windows(rng, 64)
    test, test_labels = _planted_windows(rng, 64)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        rows = torch.as_tensor(rng.choice(64, 16, replace=False))
        batch = {k: v[rows] for k, v in train.items()}
        logits = model(batch, ("stimulus_class",))["stimulus_class"]
        loss = torch.nn.functional.cross_entropy(logits, train_labels[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = model.eval()(test, ("stimulus_class",))["stimulus_class"].argmax(-1)
    assert (predicted == test_labels).float().mean() > 0.8  # chance: 0.25
