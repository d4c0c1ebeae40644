"""MtM's and POYO-SSL's objectives on CalM's backbone: the objective-against-backbone runs.

``dual_axis_mtm`` and ``dual_axis_poyo_ssl`` are CalM (:mod:`neurossl.methods.calm_family`)
with one thing changed, the pretraining objective
(:mod:`neurossl.objectives.dual_axis_masking`); ``calm`` itself is the autoregressive
objective on the same backbone and ``scratch_dual_axis`` the control of all three. So a
gap between two of these rows is the objective's alone, and the report sets it beside the
gap between the families' own methods (``mtm``, ``poyo_ssl``, ``calm``), where objective
and architecture change together.

What is shared, and why:

- *Network and input.* CalM's dataset tokenizer (frozen), per-unit z-scoring, and the
  dual-axis transformer over (neuron, patch) tokens with the frames as value input; the
  config differs only by the mask embedding and (MtM) four prompt embeddings, tables that
  a call without masks or prompt never reads.
- *Budget.* The same hparams model (:class:`~neurossl.methods.hparam_models.CalmHParams`)
  and, in every config, the same ``pretrain_steps`` and ``batch_size`` as ``calm``: the
  same number of windows per step. Tokens per step are equal for MtM (every token of the
  window is attended, masked or not); POYO-SSL's diet reads only the predictable neurons,
  so it attends fewer tokens per window at equal steps, and the report's budget table
  states the factor instead of hiding it by running more steps (the diet *is* the
  objective's claim: less but more regular data).
- *Fine-tuning and evaluation.* CalM's, unchanged: next-code adaptation on the held-out
  sessions, LP-FT decoding heads, forecasting by the direct read-out rollout. That is the
  declared adaptation for a backbone without a native read-out for a task (every
  objective is scored on the same tasks), and it keeps the comparison about pretraining. A masked
  objective's backbone therefore meets causal time attention and next-code targets only
  in adaptation; that cost belongs to the objective and is part of what is measured.
  MtM's prompt at fine-tuning and evaluation is the causal scheme's, the scheme whose
  query (predict what comes after the context) the adaptation and forecasting ask, as
  MtM itself prompts each evaluation task with its scheme.
- *Population.* Pretraining reads the neurons each objective reads (POYO-SSL: the
  split's predictable neurons of the pretraining sessions); fine-tuning and scoring read
  every neuron of the held-out sessions, as CalM and the scratch control do, so all rows
  are scored on the same population.

Modalities: both, as for ``calm`` (the Session files' modality picks the path). On
binned spikes every choice is CalM's on spikes (:mod:`neurossl.methods.calm_family`,
:mod:`neurossl.objectives.calm_spikes`) except the pretraining loss, and why:

- *Input and tokenizer.* CalM's spiking ones: the causal square-rooted smoothing of the
  counts, z-scored per unit, and the spiking tokenizer of the dataset. The question is
  what the objective does on that network, so the network stays CalM's.
- *Pretraining loss.* Each masked objective's masks on the token grid, its own-code
  cross-entropy, plus CalM's spiking second term at the scored tokens' own patches: the
  Poisson NLL of the counts from CalM's rate read-out (``next_rates``), at CalM's
  ``patch_weight`` (:mod:`neurossl.objectives.dual_axis_masking`). A hidden token's
  counts are zeroed before the trace, so no visible token's input carries them, and its
  target code is the code of the unmasked counts.
- *Rate tasks.* Co-smoothing, forecasting, inter- and intra-region are answered as CalM
  answers them: hidden query tokens, the query read-out (``query_rates``) trained in
  phase (A) and probed on frozen states, declared once for all four dual-axis rows. MtM's
  prompt there is the causal scheme's for every query: the one adaptation trains one
  read-out under causal attention for all queries, and a prompt per query would need an
  adaptation per query, which the other rows do not get.
- *Diet.* POYO-SSL pretrains on the predictable units of the spiking split (skewness and
  kurtosis of the counts, the split step's groups for spikes); fine-tuning and scoring
  read every unit of the held-out sessions, as for CalM.
- *Budget.* The ``spikes`` hparam overrides are calm's key for key in every config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from neurossl.contract import StageInputs, session_modality
from neurossl.methods.calm_family import CalmMethod
from neurossl.models.dual_axis import DualAxisConfig
from neurossl.objectives.dual_axis_masking import make_mtm_loss, make_poyo_loss
from neurossl.objectives.mtm import PROMPT_INDEX, SCHEMES
from neurossl.objectives.poyo_ssl import diet_neuron_ids

METHOD_NAMES = ("dual_axis_mtm", "dual_axis_poyo_ssl")
#: The pretraining diet of POYO-SSL (the Perceiver family's ``poyo_ssl`` default).
POYO_DIET = "predictable"


class SharedBackboneMethod(CalmMethod):
    """CalM's method with another pretraining objective on the same network."""

    method_names = METHOD_NAMES

    def _configure(self, config: DualAxisConfig) -> DualAxisConfig:
        prompts = len(SCHEMES) if self.name == "dual_axis_mtm" else 0
        return dataclasses.replace(config, masked_input=True, prompts=prompts)

    def _network(self, *args: Any, **kwargs: Any):
        network = super()._network(*args, **kwargs)
        if self.name == "dual_axis_mtm":
            network.prompt = PROMPT_INDEX["causal"]
        return network

    def _pretrain_loss(self, hp: dict[str, Any]):
        if self.name == "dual_axis_mtm":
            return make_mtm_loss(patch_weight=float(hp["patch_weight"]))
        return make_poyo_loss(patch_weight=float(hp["patch_weight"]))

    def _pretrain_neurons(
        self, inputs: StageInputs
    ) -> tuple[list[str], dict[str, list[str]] | None]:
        if self.name == "dual_axis_mtm":
            return super()._pretrain_neurons(inputs)
        sessions = inputs.splits.pretrain_sessions
        chosen = diet_neuron_ids(inputs.splits, session_modality(inputs), sessions, POYO_DIET)
        return list(chosen), chosen


def make_method(name: str) -> SharedBackboneMethod:
    return SharedBackboneMethod(name)
