"""How much of a paired gain's seed-to-seed spread is the sampling of test windows.

Why: a 95 % interval over seeds that still includes 0 can be narrowed with more seeds or
with more test windows per seed, at very different costs. Resampling each seed's test
windows (paired: both methods on the same draw) estimates the spread the windows alone
cause; when it is most of the spread across seeds, more windows narrow the interval and
more seeds barely do (docs/results/poyo_ssl.md).

    python -m neurossl.eval.window_spread results/poyo_ssl_sixteen_seeds/synthetic/eval \\
        poyo_ssl scratch_perceiver --task stimulus_class --seeds 0 1 2 11 12
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurossl.eval.metrics import balanced_accuracy

#: One seed's scored sessions: (predicted labels, true labels) per held-out session.
SeedPredictions = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Spread:
    seeds: int
    mean_gain: float
    #: Standard deviation over seeds of the paired gain (balanced accuracy).
    across_seeds: float
    #: Root mean over seeds of the bootstrap variance of that seed's gain.
    from_windows: float


def _gain(a: SeedPredictions, b: SeedPredictions, rows: list[np.ndarray] | None = None) -> float:
    """Mean over sessions of balanced accuracy(a) - balanced accuracy(b)."""
    gains = []
    for k, ((pred_a, target), (pred_b, target_b)) in enumerate(zip(a, b, strict=True)):
        if not np.array_equal(target, target_b):
            raise ValueError(f"session {k}: the two methods were scored on different windows")
        index = slice(None) if rows is None else rows[k]
        gains.append(
            balanced_accuracy(target[index], pred_a[index])
            - balanced_accuracy(target[index], pred_b[index])
        )
    return float(np.mean(gains))


def window_spread(
    method: dict[int, SeedPredictions],
    reference: dict[int, SeedPredictions],
    draws: int = 500,
    seed: int = 0,
) -> Spread:
    """The paired gain's spread across seeds and the part test-window resampling explains."""
    seeds = sorted(set(method) & set(reference))
    if len(seeds) < 2:
        raise ValueError(f"need at least two seeds both methods share, got {seeds}")
    rng = np.random.default_rng(seed)
    gains, variances = [], []
    for s in seeds:
        gains.append(_gain(method[s], reference[s]))
        sizes = [len(target) for _, target in method[s]]
        boot = [
            _gain(method[s], reference[s], [rng.integers(0, n, n) for n in sizes])
            for _ in range(draws)
        ]
        variances.append(np.var(boot))
    return Spread(
        seeds=len(seeds),
        mean_gain=float(np.mean(gains)),
        across_seeds=float(np.std(gains, ddof=1)),
        from_windows=float(np.sqrt(np.mean(variances))),
    )


def read_predictions(
    eval_dir: Path, method: str, task: str, modality: str, size: str
) -> dict[int, SeedPredictions]:
    """seed -> [(pred, target) per session] from every ``predictions.npz`` of a method."""
    found: dict[int, SeedPredictions] = {}
    for path in sorted((eval_dir / method / modality / size).glob("seed*/predictions.npz")):
        with np.load(path) as arrays:
            sessions = sorted(
                {key.split("/")[1] for key in arrays.files if key.startswith(f"{task}/")}
            )
            if not sessions:
                raise ValueError(f"{path}: no predictions of task {task!r}")
            found[int(path.parent.name[4:])] = [
                (arrays[f"{task}/{s}/pred"], arrays[f"{task}/{s}/target"]) for s in sessions
            ]
    if not found:
        raise ValueError(f"no {eval_dir / method / modality / size}/seed*/predictions.npz")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("method")
    parser.add_argument("reference")
    parser.add_argument("--task", default="stimulus_class")
    parser.add_argument("--modality", default="calcium")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds only (default: all)")
    args = parser.parse_args(argv)
    read = [
        read_predictions(args.eval_dir, name, args.task, args.modality, args.size)
        for name in (args.method, args.reference)
    ]
    if args.seeds:
        read = [{s: by_seed[s] for s in args.seeds if s in by_seed} for by_seed in read]
    spread = window_spread(*read)
    print(
        f"{args.method} - {args.reference}, {args.task} balanced accuracy, {spread.seeds} seeds: "
        f"mean {spread.mean_gain:+.3f}, sd across seeds {spread.across_seeds:.3f}, "
        f"sd from test windows {spread.from_windows:.3f}"
    )


if __name__ == "__main__":
    main()
