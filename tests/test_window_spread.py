"""The test-window share of a paired gain's spread over seeds (neurossl.eval.window_spread)."""

from __future__ import annotations

import numpy as np
import pytest

from neurossl.eval.window_spread import main, read_predictions, window_spread

CLASSES, WINDOWS, SESSIONS = 4, 40, 2


def _draw(rng: np.random.Generator, target: np.ndarray, p_correct: float) -> np.ndarray:
    """Labels that are right on a random share of windows and a wrong class elsewhere."""
    right = rng.random(target.size) < p_correct
    return np.where(right, target, (target + rng.integers(1, CLASSES, target.size)) % CLASSES)


def _targets(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, CLASSES, WINDOWS) for _ in range(SESSIONS)]


def test_fresh_errors_on_every_seed_are_all_window_sampling():
    """Each seed right on an independent draw of windows: the spread across seeds is the
    windows' sampling, and the bootstrap recovers it."""
    rng = np.random.default_rng(0)
    targets = _targets(rng)
    method = {s: [(_draw(rng, t, 0.45), t) for t in targets] for s in range(40)}
    reference = {s: [(_draw(rng, t, 0.35), t) for t in targets] for s in range(40)}
    spread = window_spread(method, reference, draws=200)
    assert spread.seeds == 40
    assert 0.03 < spread.mean_gain < 0.17
    assert 0.7 < spread.from_windows / spread.across_seeds < 1.4, spread


def test_the_same_predictions_on_every_seed_have_no_spread_across_seeds():
    rng = np.random.default_rng(1)
    targets = _targets(rng)
    fixed_a = [(_draw(rng, t, 0.5), t) for t in targets]
    fixed_b = [(_draw(rng, t, 0.3), t) for t in targets]
    spread = window_spread(dict.fromkeys(range(5), fixed_a), dict.fromkeys(range(5), fixed_b))
    assert spread.across_seeds == 0.0 and spread.from_windows > 0.05


def test_methods_scored_on_different_windows_are_refused():
    rng = np.random.default_rng(2)
    targets = _targets(rng)
    other = [t[::-1].copy() for t in targets]
    method = {s: [(t, t) for t in targets] for s in (0, 1)}
    reference = {s: [(t, t) for t in other] for s in (0, 1)}
    with pytest.raises(ValueError, match="different windows"):
        window_spread(method, reference)
    with pytest.raises(ValueError, match="at least two seeds"):
        window_spread({0: method[0]}, {0: method[0]})


def test_reads_the_evaluation_layout_and_prints_both_spreads(tmp_path, capsys):
    rng = np.random.default_rng(3)
    targets = _targets(rng)
    for name, p in (("poyo_ssl", 0.5), ("scratch_perceiver", 0.3)):
        for seed in (0, 1, 2):
            run = tmp_path / name / "calcium" / "tiny" / f"seed{seed}"
            run.mkdir(parents=True)
            arrays = {}
            for k, t in enumerate(targets):
                arrays[f"stimulus_class/sub-03_ses-0{k + 1}/pred"] = _draw(rng, t, p)
                arrays[f"stimulus_class/sub-03_ses-0{k + 1}/target"] = t
            np.savez(run / "predictions.npz", **arrays)
    read = read_predictions(tmp_path, "poyo_ssl", "stimulus_class", "calcium", "tiny")
    assert sorted(read) == [0, 1, 2] and len(read[0]) == SESSIONS
    with pytest.raises(ValueError, match="no predictions of task 'choice'"):
        read_predictions(tmp_path, "poyo_ssl", "choice", "calcium", "tiny")
    main([str(tmp_path), "poyo_ssl", "scratch_perceiver", "--seeds", "0", "2"])
    assert "2 seeds" in capsys.readouterr().out
