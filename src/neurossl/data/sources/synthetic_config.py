"""What the synthetic dataset looks like (sizes, seeds, ground truth knobs) and its session ids.

Apart from the generator (``synthetic``) because the workflow reads it at every start-up
to know the sessions and validate the config, and the generator's NWB and SciPy imports
would add seconds to each ``snakemake`` call (and to every SLURM job, which re-reads the
workflow).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from neurossl.data.sources import synthetic_model as model

#: Behaviour series the generator writes (``synthetic._add_behavior``) and trial label
#: columns (``synthetic._add_trials``): the task variables known before any file exists.
BEHAVIOR_VARIABLES = ("wheel_speed", "running_speed")
TRIAL_LABELS = ("stimulus_class", "choice")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and ground truth of the synthetic dataset; defaults keep the workflow minutes long."""

    seed: int = 0
    n_subjects: int = 3
    sessions_per_subject: int = 2
    n_trials: int = 60
    #: Trials of named subjects ({"sub-03": 400}), overriding ``n_trials``. Why: a
    #: held-out animal with many trials gives many test windows while the others stay
    #: as they are (each session draws from its own random streams), so evaluation noise
    #: falls without changing what pretraining sees.
    n_trials_by_subject: dict[str, int] = field(default_factory=dict)
    trial_duration: float = 2.0
    iti: float = 0.5
    n_units: int = 48
    n_rois: int = 48
    regions: tuple[str, ...] = ("VISp", "CA1", "LP", "PO")
    n_stimulus_classes: int = 4
    predictable_fraction: float = 0.6
    frame_rate: float = 30.0
    base_rate: float = 8.0
    #: Mean norm of a predictable unit's log-rate weights on the (unit-scale) latents:
    #: how strongly firing follows the shared dynamics, i.e. how much any model can learn.
    modulation: float = 0.5
    #: The same for the imaged ROIs. Separate because strong modulation makes regular
    #: cells' dF/F skewed too, and the skewness/kurtosis knee then no longer separates
    #: them from the bursting cells (precision 1.0 at 0.5 fell to 0.67 at 1.0).
    roi_modulation: float = 0.5
    #: How the imaged ROIs' sparse cells burst (``synthetic_model.make_population``):
    #: gated, high-gain versions of the regular cells' readout, so the stimulus is in
    #: them but takes many labels to read, which is where pretraining can pay (POYO-SSL).
    #: None: threshold bursts on the stimulus rotation, as the spiking units have.
    roi_sparse_gain: float | None = 3.0
    #: Share of every ROI's squared readout weight on the stimulus rotation latents
    #: (None: as the region masks draw it, as for the units).
    roi_stimulus_share: float | None = 0.5
    #: Write ``processing/ground_truth`` and the ``predictable`` columns.
    ground_truth: bool = True

    def __post_init__(self) -> None:
        checks = {
            "n_subjects": self.n_subjects >= 2,
            "sessions_per_subject": self.sessions_per_subject >= 1,
            "n_trials": self.n_trials >= 1,
            "n_trials_by_subject": all(n >= 1 for n in self.n_trials_by_subject.values()),
            "trial_duration": self.trial_duration > model.STIM_ONSET,
            "iti": self.iti >= 0,
            "n_units": self.n_units >= 1,
            "n_rois": self.n_rois >= 1,
            "regions": len(self.regions) >= 1 and len(set(self.regions)) == len(self.regions),
            "n_stimulus_classes": self.n_stimulus_classes >= 2,
            "predictable_fraction": 0.0 <= self.predictable_fraction <= 1.0,
            "frame_rate": 0 < self.frame_rate <= 1 / model.FINE_DT,
            "base_rate": self.base_rate > 0,
            "modulation": self.modulation > 0,
            "roi_modulation": self.roi_modulation > 0,
            "roi_sparse_gain": self.roi_sparse_gain is None or self.roi_sparse_gain > 0,
            "roi_stimulus_share": self.roi_stimulus_share is None
            or 0.0 < self.roi_stimulus_share < 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ValueError(f"invalid synthetic config value(s): {values}")
        subjects = self.subject_ids()
        unknown = sorted(set(self.n_trials_by_subject) - set(subjects))
        if unknown:
            raise ValueError(
                f"synthetic.n_trials_by_subject names unknown subject(s) {unknown}; "
                f"expected some of {subjects}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown synthetic config key(s) {unknown}; expected {sorted(known)}")
        values = dict(d)
        if "regions" in values:
            values["regions"] = tuple(values["regions"])
        return cls(**values)

    def subject_ids(self) -> list[str]:
        return [f"sub-{s:02d}" for s in range(1, self.n_subjects + 1)]

    def trials_of(self, session_id: str) -> int:
        return self.n_trials_by_subject.get(session_id.split("_")[0], self.n_trials)

    def duration_of(self, session_id: str) -> float:
        """Recording length (s): trials separated (and framed) by inter-trial gaps."""
        return self.trials_of(session_id) * (self.trial_duration + self.iti) + self.iti


def session_ids(config: SyntheticConfig) -> list[str]:
    return [
        f"{subject}_ses-{k:02d}"
        for subject in config.subject_ids()
        for k in range(1, config.sessions_per_subject + 1)
    ]
