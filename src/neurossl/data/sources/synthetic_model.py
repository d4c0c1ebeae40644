"""The generative model behind the synthetic dataset, kept apart from the NWB layout.

Everything here returns plain arrays so the model can be checked (and changed) without
touching file I/O. Two random streams exist on purpose:

- the *world* (``world_rng``): class-dependent rotations, which latents each region reads,
  behaviour readouts, the choice readout. It depends on the seed only, so every session
  and animal shares the same dynamics and pretraining across sessions can pay off;
- the *session* (``session_rng``): trial sequence, chaotic initial state, neuron readout
  weights, which neurons are predictable, bursts, noise. Different per session, so the
  models must learn per-session stitching.

Rates are piecewise constant on a fine grid of ``FINE_DT`` seconds and spikes are drawn
exactly from that inhomogeneous Poisson process (Poisson count per fine bin, times uniform
inside it), so the expected count of any bin is the integral of the stored rates.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

#: Resolution (s) of the ground-truth grid: rates, latents and the noise-free calcium.
FINE_DT = 0.01
#: Sampling clock of spike times (Hz), as in a typical extracellular acquisition system.
SPIKE_CLOCK = 30_000.0
#: Stimulus onset relative to trial start (s): the MtM-like window is -0.5 .. +1.5 s.
STIM_ONSET = 0.5
LATENT_NAMES = ("rotation_1", "rotation_2", "slow_oscillation", "lorenz_x", "lorenz_y", "lorenz_z")
_ROTATION = (0, 1)
_SLOW = (2,)
_LORENZ = (3, 4, 5)
#: Lorenz time units per second of recording: one lobe visit lasts roughly 1-2 s, slower
#: than a 20 ms bin by far, so the recent past predicts the near future.
_LORENZ_SPEED = 0.5
_LORENZ_CENTRE = np.array([0.0, 0.0, 23.5])
_LORENZ_SCALE = np.array([7.9, 9.0, 8.6])
#: GCaMP-like kernel (s).
CALCIUM_RISE = 0.05
CALCIUM_DECAY = 0.5
#: dF/F of one spike at the kernel's peak, and the measurement noise (dF/F).
CALCIUM_SPIKE_AMPLITUDE = 0.2
CALCIUM_NOISE = 0.08
#: Firing rate (Hz) of a sparse neuron outside its bursts (the median, threshold model).
_SPARSE_BASELINE = 0.3


@dataclass(frozen=True)
class World:
    """Ground truth shared by every session of one seed."""

    rotation_amplitude: np.ndarray  # [C]
    rotation_frequency: np.ndarray  # [C] rad/s
    rotation_phase: np.ndarray  # [C]
    region_masks: np.ndarray  # [R, K] 1 where a region reads a latent strongly
    wheel_weights: np.ndarray  # [2, K]
    running_weights: np.ndarray  # [K]
    choice_weights: np.ndarray  # [K]


@dataclass(frozen=True)
class Trials:
    start: np.ndarray
    stop: np.ndarray
    stim_on: np.ndarray
    stimulus_class: np.ndarray
    choice: np.ndarray


@dataclass(frozen=True)
class Population:
    """One population (units or ROIs) of a session."""

    rates: np.ndarray  # [T_fine, N] Hz, piecewise constant on the fine grid
    counts: np.ndarray  # [T_fine, N] spikes per fine bin
    predictable: np.ndarray  # [N] bool
    region_index: np.ndarray  # [N] int


def world_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))


def session_rng(seed: int, session_id: str, stream: int) -> np.random.Generator:
    """A stream per (seed, session, purpose): adding a stream never shifts the others."""
    key = (1, zlib.crc32(session_id.encode()), stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def make_world(seed: int, n_classes: int, n_regions: int) -> World:
    rng = world_rng(seed)
    k = len(LATENT_NAMES)
    groups = (_ROTATION, _SLOW, _LORENZ)
    masks = np.zeros((n_regions, k))
    for r in range(n_regions):
        # Each region leans on two of the three latent groups, a different pair per region
        # where possible, so intra- and inter-region prediction differ in difficulty.
        for g in (r % 3, (r + 1 + r // 3) % 3):
            masks[r, list(groups[g])] = 1.0
    return World(
        rotation_amplitude=rng.uniform(1.2, 2.2, n_classes),
        rotation_frequency=2 * np.pi * rng.uniform(1.0, 2.5, n_classes),
        rotation_phase=np.linspace(0, 2 * np.pi, n_classes, endpoint=False)
        + rng.uniform(-0.3, 0.3, n_classes),
        region_masks=masks,
        wheel_weights=rng.normal(0, 1, (2, k)) / np.sqrt(k),
        running_weights=rng.normal(0, 1, k) / np.sqrt(k),
        choice_weights=np.r_[1.0, 0.0, 0.0, 0.5, 0.0, 0.0],
    )


def fine_times(duration: float) -> np.ndarray:
    return np.arange(round(duration / FINE_DT)) * FINE_DT


def make_trials(
    rng: np.random.Generator, n_trials: int, trial_duration: float, iti: float, n_classes: int
) -> Trials:
    start = iti + np.arange(n_trials) * (trial_duration + iti)
    stimulus_class = rng.integers(0, n_classes, n_trials)
    return Trials(
        start=start,
        stop=start + trial_duration,
        stim_on=start + STIM_ONSET,
        stimulus_class=stimulus_class,
        choice=np.zeros(n_trials, dtype=np.int64),
    )


def make_latents(
    world: World, trials: Trials, rng: np.random.Generator, t: np.ndarray
) -> np.ndarray:
    """[T_fine, 6]: stimulus-driven rotation, trial-variable slow oscillation, Lorenz."""
    latents = np.zeros((t.size, len(LATENT_NAMES)))
    for onset, c in zip(trials.stim_on, trials.stimulus_class, strict=True):
        lo = np.searchsorted(t, onset)
        tau = t[lo:] - onset
        tau = tau[tau < 4.0]
        envelope = world.rotation_amplitude[c] * (tau / 0.3) * np.exp(1 - tau / 0.3)
        angle = world.rotation_frequency[c] * tau + world.rotation_phase[c]
        latents[lo : lo + tau.size, 0] += envelope * np.cos(angle)
        latents[lo : lo + tau.size, 1] += envelope * np.sin(angle)
    # Amplitude varies from trial to trial but the oscillation itself stays continuous.
    knots = np.r_[0.0, trials.stim_on, t[-1] + FINE_DT]
    amplitude = np.interp(t, knots, rng.uniform(0.4, 1.6, knots.size))
    latents[:, 2] = np.sqrt(2) * amplitude * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    latents[:, 3:] = _lorenz(rng, t.size)
    return latents


def _lorenz(rng: np.random.Generator, n: int) -> np.ndarray:
    """A standardised Lorenz trajectory (RK4 on plain floats: far faster than numpy scalars)."""
    h = FINE_DT * _LORENZ_SPEED
    x, y, z = rng.normal(0, 5, 3) + np.array([0.0, 0.0, 20.0])

    def f(x: float, y: float, z: float) -> tuple[float, float, float]:
        return 10.0 * (y - x), x * (28.0 - z) - y, x * y - (8.0 / 3.0) * z

    out = np.empty((n, 3))
    burn_in = 2000
    for i in range(n + burn_in):
        k1 = f(x, y, z)
        k2 = f(x + 0.5 * h * k1[0], y + 0.5 * h * k1[1], z + 0.5 * h * k1[2])
        k3 = f(x + 0.5 * h * k2[0], y + 0.5 * h * k2[1], z + 0.5 * h * k2[2])
        k4 = f(x + h * k3[0], y + h * k3[1], z + h * k3[2])
        x += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        y += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        z += h / 6 * (k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2])
        if i >= burn_in:
            out[i - burn_in] = (x, y, z)
    return (out - _LORENZ_CENTRE) / _LORENZ_SCALE


def choices(
    world: World, trials: Trials, latents: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """-1/+1 from a latent projection 1.2 s after onset, with a little noise (IBL-style)."""
    idx = np.clip(np.rint((trials.stim_on + 1.2) / FINE_DT).astype(int), 0, len(latents) - 1)
    drive = latents[idx] @ world.choice_weights + rng.normal(0, 0.3, idx.size)
    return np.where(drive >= 0, 1, -1).astype(np.int64)


def make_population(
    world: World,
    trials: Trials,
    latents: np.ndarray,
    rng: np.random.Generator,
    *,
    n: int,
    predictable_fraction: float,
    base_rate: float,
    modulation: float,
    sparse_gain: float | None = None,
    stimulus_share: float | None = None,
) -> Population:
    """Predictable neurons are log-linear in the latents; the rest burst sparsely.

    Unpredictable neurons fire at a low baseline and burst only on their own random share
    of the trials (30-70 %), so no earlier activity says whether a trial is one of a
    neuron's bursting trials: their bursts are heavy-tailed, stimulus-contingent and not
    forecastable from the population's past. How they burst on those trials:

    - ``sparse_gain`` None: whenever the stimulus-evoked rotation pushes the latent state
      past a high threshold along the neuron's preferred direction in the rotation plane.
      Few noisy cells then tell the stimulus almost as well as many labels can (a
      logistic probe of 70 trials reads 0.77 of a 0.85-0.89 ceiling), which leaves a
      pretrained model no room to beat one trained from scratch;
    - ``sparse_gain`` g: at ``exp(g * u - 3)`` times the base rate, where ``u`` is the
      neuron's unit-norm projection of all latents, drawn like a predictable neuron's.
      They are then high-gain, gated versions of the regular cells' readout: the
      stimulus is in them (probe 0.91 from 1000 trials) but, mixed with the ongoing
      latents, needs many labels to read (0.46 from 70), the label scarcity in which
      the state a model learnt from the regular cells can pay (docs/hparam_selection.md).

    ``stimulus_share`` sets the share of every neuron's squared weight norm on the two
    rotation latents (None: whatever the region masks draw), i.e. how much of the
    regular cells' variance the stimulus explains. Thresholds and burst sizes vary so the
    two groups overlap a little in skewness/kurtosis rather than being trivially
    separable.
    """
    t_n, k = latents.shape
    n_regions = world.region_masks.shape[0]
    n_predictable = round(predictable_fraction * n)
    predictable = np.zeros(n, dtype=bool)
    predictable[rng.permutation(n)[:n_predictable]] = True
    region_index = rng.permutation(np.arange(n) % n_regions)

    mask = world.region_masks[region_index]  # [N, K]
    weights = rng.normal(0, 1, (n, k)) * (mask + 0.25 * (1 - mask))
    if stimulus_share is not None:
        weights = _with_stimulus_share(weights, stimulus_share)
    gain = modulation * rng.uniform(0.7, 1.4, n)
    weights *= (gain / np.linalg.norm(weights, axis=1))[:, None]
    log_base = np.log(base_rate) + rng.normal(0, 0.5, n)
    # Each fine bin belongs to the trial whose stimulus came last (-1 before the first).
    trial_of = np.searchsorted(trials.stim_on, np.arange(t_n) * FINE_DT, side="right") - 1

    def trial_gate() -> np.ndarray:
        bursting_trials = rng.random(trials.stim_on.size) < rng.uniform(0.3, 0.7)
        return (trial_of >= 0) & bursting_trials[np.maximum(trial_of, 0)]

    if sparse_gain is None:
        log_base[~predictable] = np.log(_SPARSE_BASELINE) + rng.normal(0, 0.5, (~predictable).sum())
        weights[~predictable] *= 0.3
        rates = np.exp(log_base[None, :] + latents @ weights.T)
        rotation = latents[:, list(_ROTATION)]
        for j in np.flatnonzero(~predictable):
            direction = rng.uniform(0, 2 * np.pi)
            drive = rotation @ np.array([np.cos(direction), np.sin(direction)])
            threshold = rng.uniform(1.0, 1.6)
            gate = trial_gate()
            peak = base_rate * rng.uniform(6.0, 14.0)
            rates[:, j] += gate * peak * np.clip((drive - threshold) / 0.4, 0.0, 1.0) ** 2
    else:
        drive = latents @ weights.T
        rates = np.exp(log_base[None, :] + drive)
        for j in np.flatnonzero(~predictable):
            gate = trial_gate()
            burst = np.exp(sparse_gain * drive[:, j] / gain[j] - 3.0 + rng.normal(0, 0.5))
            rates[:, j] = _SPARSE_BASELINE + gate * base_rate * burst
    counts = rng.poisson(rates * FINE_DT)
    return Population(
        rates=rates, counts=counts, predictable=predictable, region_index=region_index
    )


def _with_stimulus_share(weights: np.ndarray, share: float) -> np.ndarray:
    """Rescale each row so ``share`` of its squared norm lies on the rotation latents."""
    rotation, rest = weights[:, list(_ROTATION)], weights[:, len(_ROTATION) :]
    rotation = rotation / np.linalg.norm(rotation, axis=1, keepdims=True)
    rest = rest / np.linalg.norm(rest, axis=1, keepdims=True)
    return np.c_[np.sqrt(share) * rotation, np.sqrt(1.0 - share) * rest]


def spike_times(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flat per-unit-sorted spike times on a 30 kHz clock, and the NWB end index per unit.

    Spikes fall on a uniformly drawn clock tick inside their fine bin, which is the
    Poisson process of the piecewise-constant rate up to the clock's resolution.
    """
    t_n, n = counts.shape
    per_cell = counts.T.ravel()
    cell = np.repeat(np.arange(per_cell.size), per_cell)
    unit, fine_bin = np.divmod(cell, t_n)
    ticks_per_bin = round(FINE_DT * SPIKE_CLOCK)
    ticks = fine_bin * ticks_per_bin + rng.integers(0, ticks_per_bin, cell.size)
    order = np.lexsort((ticks, unit))
    ends = np.cumsum(np.bincount(unit, minlength=n))
    return ticks[order] / SPIKE_CLOCK, ends


def calcium_from_counts(counts: np.ndarray) -> np.ndarray:
    """Noise-free dF/F on the fine grid: spikes convolved with a rise/decay kernel.

    The kernel is a difference of exponentials, applied as two first-order recursive
    filters (exact and linear in time, unlike an FFT over a long recording).
    """
    a_decay = np.exp(-FINE_DT / CALCIUM_DECAY)
    a_rise = np.exp(-FINE_DT / CALCIUM_RISE)
    tau = np.arange(0, 5 * CALCIUM_DECAY, FINE_DT)
    peak = np.max(np.exp(-tau / CALCIUM_DECAY) - np.exp(-tau / CALCIUM_RISE))
    x = counts.astype(np.float64)
    from scipy.signal import lfilter  # here: the workflow imports this module at start-up

    slow = lfilter([1.0], [1.0, -a_decay], x, axis=0)
    fast = lfilter([1.0], [1.0, -a_rise], x, axis=0)
    return CALCIUM_SPIKE_AMPLITUDE * (slow - fast) / peak


def wheel_speed(world: World, latents: np.ndarray) -> np.ndarray:
    """A saturating, sign-carrying readout (rad/s), like a wheel turned left or right."""
    projection = latents @ world.wheel_weights.T
    u, v = projection[:, 0], projection[:, 1]
    return 3.0 * np.tanh(u) * (1.0 + 0.5 * v**2)


def running_speed(world: World, latents: np.ndarray) -> np.ndarray:
    """A non-negative readout (cm/s), like a treadmill."""
    return 8.0 * np.logaddexp(0.0, 1.5 * latents @ world.running_weights)
