"""What the workflow plans with, per method, readable without importing the method.

Two facts shape the DAG: whether a method has a pretraining stage, and which hparams
only its fine-tuning reads (the pretrain rule leaves them out of its params, so tuning
fine-tuning does not rerun pretraining). The workflow needs them at every start-up
(each ``snakemake`` call, each SLURM job re-reading the workflow), and importing the
method families to ask them imported torch: about 3 s of a 7 s dry run. The families
take these values from here, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Methods with a pretraining stage; every other method starts at fine-tuning.
PRETRAINING_METHODS = frozenset(
    {"mtm", "ndt", "poyo_ssl", "poyo_ssl_mixed", "poyo_ssl_reverse", "calm"}
)

#: Implementation module -> hparam keys its pretrain stage never reads.
FINETUNE_ONLY_HPARAMS: dict[str, frozenset[str]] = {
    "neurossl.methods.ndt_family": frozenset(
        {"max_steps", "finetune_batch_size", "stitch_steps", "stitch_lr", "decode_steps",
         "decode_lr"}
    ),
    "neurossl.methods.poyo_family": frozenset(
        {"finetune_neurons", "unit_id_loss", "unit_id_lr", "unit_id_steps", "head_steps",
         "full_steps", "unfreeze_layers", "full_lr_scale", "frame_delta"}
    ),
    "neurossl.methods.calm_family": frozenset(
        {"adapt_steps", "head_steps", "finetune_lr", "probe_steps", "probe_lr",
         "probe_weight_decay", "forecast_mode", "feedback", "samples"}
    ),
    "neurossl.methods.baselines": frozenset(),
}  # fmt: skip


@dataclass(frozen=True)
class MethodTraits:
    pretrains: bool
    finetune_only_hparams: frozenset[str]
