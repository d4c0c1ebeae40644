"""What the workflow plans with, per method, readable without importing the method.

Two facts shape the DAG: whether a method has a pretraining stage, and which hparams
only its fine-tuning reads (the pretrain rule leaves them out of its params, so tuning
fine-tuning does not rerun pretraining). The workflow needs them at every start-up
(each ``snakemake`` call, each SLURM job re-reading the workflow), and importing the
method families to ask them imported torch: about 3 s of a 7 s dry run. Both come from
the method table (:mod:`neurossl.catalog`) and the method's hparams model, which the
families read too, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurossl import catalog
from neurossl.hparams import HParams, check, finetune_only_keys, model_of


@dataclass(frozen=True)
class MethodTraits:
    pretrains: bool
    finetune_only_hparams: frozenset[str]


def method_traits(name: str) -> MethodTraits:
    """What the workflow plans with, without importing the method (and torch)."""
    spec = catalog.method(name)
    return MethodTraits(spec.pretrains, finetune_only_keys(model_of(spec.hparams)))


def check_hparams(owner: str, values: dict[str, Any]) -> HParams:
    """The config's ``hparams.<owner>`` (a method or ``tokenizer``) checked against its
    model; the error names the method and the key."""
    path = catalog.TOKENIZER_HPARAMS if owner == "tokenizer" else catalog.method(owner).hparams
    return check(owner, model_of(path), values)
