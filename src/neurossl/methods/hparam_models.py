"""The hyper-parameter models of the built-in method families (read without torch).

Each family module reads its stage's ``hparams`` through its model here; the workflow
checks the config against the same models when it is planned. Why a default has its
value is argued in the family module; ``docs/hparams.md`` is generated from these
models (``python -m neurossl.methods.hparam_models``). Choices that name values of a
torch module (presets, diets, rollout modes) are spelt out here, and a test keeps them
equal to the module's constants.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import model_validator

from neurossl import catalog
from neurossl.hparams import HParams, hparam, markdown, model_of

Diet = Literal["predictable", "all", "unpredictable"]


class NDTHParams(HParams):
    """``mtm``, ``ndt``, ``scratch_ndt`` (:mod:`neurossl.methods.ndt_family`)."""

    preset: Literal["tiny", "published"] | None = hparam(
        None, "model preset (None: the size wildcard, which must name one)"
    )
    d_model: int | None = hparam(None, "width override", ge=1)
    n_layers: int | None = hparam(None, "layers override", ge=1)
    n_heads: int | None = hparam(None, "attention heads override", ge=1)
    d_ff: int | None = hparam(None, "feed-forward width override", ge=1)
    dropout: float | None = hparam(None, "dropout override", ge=0, lt=1)
    attn_dropout: float | None = hparam(None, "attention dropout override", ge=0, lt=1)
    max_bins: int | None = hparam(None, "longest window in bins override", ge=1)
    pretrain_steps: int = hparam(1500, "pretraining steps", ge=0)
    max_steps: int = hparam(200, "full fine-tuning steps", ge=0, finetune_only=True)
    lr: float = hparam(3e-3, "peak learning rate", gt=0)
    weight_decay: float = hparam(0.01, "AdamW weight decay", ge=0)
    warmup_steps: int = hparam(10, "linear warm-up steps", ge=0)
    batch_size: int = hparam(16, "windows per batch (pretraining, evaluation)", ge=1)
    finetune_batch_size: int = hparam(32, "windows per fine-tuning batch", ge=1, finetune_only=True)
    eval_every: int = hparam(25, "steps between validation passes", ge=1)
    checkpoint_every: int = hparam(50, "steps between resumable checkpoints", ge=1)
    patience: int = hparam(0, "early-stopping evaluations (0: off)", ge=0)
    grad_clip: float = hparam(1.0, "gradient norm clip", gt=0)
    num_workers: int = hparam(0, "data-loader workers", ge=0)
    compile: bool = hparam(False, "torch.compile the model")
    progress: bool = hparam(True, "progress bar on a terminal, log lines every N steps")
    stitch_steps: int = hparam(120, "phase 1: new stitchers only", ge=0, finetune_only=True)
    stitch_lr: float = hparam(3e-3, "phase 1 learning rate", gt=0, finetune_only=True)
    decode_steps: int = hparam(100, "phase 3: fine-tuned heads (0 skips)", ge=0, finetune_only=True)
    decode_lr: float = hparam(1e-3, "phase 3 learning rate", gt=0, finetune_only=True)
    neuron_ratio: float = hparam(0.3, "neuron masking ratio", gt=0, lt=1)
    causal_fraction: float = hparam(0.6, "causal masking: share of future bins", gt=0, lt=1)
    temporal_ratio: float = hparam(0.3, "temporal masking ratio", gt=0, lt=1)
    intra_ratio: float = hparam(0.5, "intra-region masking ratio", gt=0, lt=1)
    context: int = hparam(32, "calcium forecast context (frames)", ge=1)
    horizon: int = hparam(16, "calcium forecast horizon (frames)", ge=1)
    calcium: dict[str, Any] | None = hparam(
        None, "overrides of these keys on calcium recordings (e.g. shorter budgets)"
    )

    @model_validator(mode="after")
    def _calcium_overrides_are_keys(self) -> NDTHParams:
        if self.calcium is not None:
            if "calcium" in self.calcium:
                raise ValueError("'calcium' overrides cannot nest another 'calcium'")
            base = self.model_dump(exclude={"calcium"}, exclude_unset=True)
            NDTHParams(**(base | self.calcium))  # a misspelt override fails at planning
        return self


class PoyoHParams(HParams):
    """``poyo_ssl`` and its diets, ``scratch_perceiver`` (:mod:`neurossl.methods.poyo_family`)."""

    neuron_diet: Diet = hparam("predictable", "neurons pretraining sees (default: by method)")
    finetune_neurons: Diet = hparam(
        "unpredictable", "neuron group fine-tuned and scored", finetune_only=True
    )
    mask_ratio: float = hparam(0.3, "share of tokens masked (pretrain, unit id)", gt=0, lt=1)
    mask_span: int = hparam(6, "samples per masked segment", ge=1)
    batch_size: int = hparam(8, "windows per step (all phases)", ge=1)
    lr: float = hparam(3e-3, "peak AdamW learning rate", gt=0)
    weight_decay: float = hparam(0.01, "weight decay of weight matrices", ge=0)
    warmup_steps: int = hparam(5, "linear warm-up of every phase", ge=0)
    max_steps: int = hparam(120, "pretraining steps", ge=0)
    aux_weight: float = hparam(0.0, "weight of auxiliary decoding losses in pretraining", ge=0)
    reconstruction_weight: float = hparam(1.0, "weight of masked reconstruction", ge=0)
    unit_id_loss: Literal["task", "reconstruction"] = hparam(
        "reconstruction", "phase 1 loss", finetune_only=True
    )
    unit_id_lr: float | None = hparam(
        None, "phase 1 peak learning rate (None: lr)", gt=0, finetune_only=True
    )
    unit_id_steps: int = hparam(20, "phase 1 steps (0 skips)", ge=0, finetune_only=True)
    head_steps: int = hparam(0, "phase 2 steps (0 skips)", ge=0, finetune_only=True)
    full_steps: int = hparam(150, "phase 3 steps (0 skips)", ge=0, finetune_only=True)
    unfreeze_layers: int = hparam(1, "latent layers trained in phase 2", ge=0, finetune_only=True)
    full_lr_scale: float = hparam(
        1.0, "phase 3 learning rate = lr * this", gt=0, finetune_only=True
    )
    eval_every: int = hparam(1000, "steps between validation passes", ge=1)
    patience: int = hparam(0, "early-stopping evaluations (0: off)", ge=0)
    frame_delta: int = hparam(
        0, "within-delta accuracy for natural_movie_frame", ge=0, finetune_only=True
    )
    context: int = hparam(32, "calcium forecast context (frames)", ge=1, finetune_only=True)
    horizon: int = hparam(16, "calcium forecast horizon (frames)", ge=1, finetune_only=True)
    forecast_steps: int = hparam(
        100, "calcium forecasting read-out steps (frozen trunk)", ge=1, finetune_only=True
    )
    spikes: dict[str, Any] | None = hparam(
        None, "overrides of these keys on spiking recordings (e.g. shorter budgets)"
    )

    @model_validator(mode="after")
    def _pretraining_has_a_loss(self) -> PoyoHParams:
        if self.reconstruction_weight + self.aux_weight == 0:
            raise ValueError("reconstruction_weight and aux_weight are both 0: no pretraining loss")
        if self.spikes is not None:
            if "spikes" in self.spikes:
                raise ValueError("'spikes' overrides cannot nest another 'spikes'")
            base = self.model_dump(exclude={"spikes"}, exclude_unset=True)
            PoyoHParams(**(base | self.spikes))  # a misspelt override fails at planning
        return self


class CalmHParams(HParams):
    """``calm``, ``scratch_dual_axis`` (:mod:`neurossl.methods.calm_family`) and the
    shared-backbone objectives (:mod:`neurossl.methods.shared_backbone`)."""

    tokenizer_path: str | None = hparam(None, "tokenizer checkpoint (set by the workflow)")
    width: int | None = hparam(None, "backbone width override of the size preset", ge=1)
    layers: int | None = hparam(None, "backbone layers override", ge=1)
    heads: int | None = hparam(None, "backbone heads override", ge=1)
    mlp_ratio: int | None = hparam(None, "backbone MLP ratio override", ge=1)
    dropout: float | None = hparam(None, "backbone dropout override", ge=0, lt=1)
    pretrain_steps: int = hparam(100, "pretraining steps", ge=0)
    adapt_steps: int = hparam(
        60, "fine-tune phase A steps (self-supervised)", ge=0, finetune_only=True
    )
    head_steps: int = hparam(
        30, "fine-tune phase B steps (heads + backbone)", ge=0, finetune_only=True
    )
    lr: float = hparam(3e-3, "peak learning rate (warm-up + cosine)", gt=0)
    finetune_lr: float = hparam(2e-3, "peak learning rate of fine-tuning", gt=0, finetune_only=True)
    weight_decay: float = hparam(0.01, "AdamW weight decay", ge=0)
    warmup_steps: int = hparam(20, "linear warm-up steps", ge=0)
    batch_size: int = hparam(8, "windows per batch", ge=1)
    eval_every: int = hparam(100, "validation interval", ge=1)
    patience: int = hparam(0, "early-stopping evaluations (0: off)", ge=0)
    probe_steps: int = hparam(200, "full-batch head probe steps", ge=0, finetune_only=True)
    probe_lr: float = hparam(1e-2, "head probe learning rate", gt=0, finetune_only=True)
    probe_weight_decay: float = hparam(0.1, "head probe weight decay", ge=0, finetune_only=True)
    next_token_weight: float = hparam(1.0, "self-supervised loss weight in phase B", ge=0)
    context: int = hparam(32, "forecast context (frames, multiple of the patch)", ge=1)
    horizon: int = hparam(16, "forecast horizon (frames, multiple of the patch)", ge=1)
    forecast_mode: Literal["direct", "greedy", "expected", "sample"] = hparam(
        "direct", "scored rollout", finetune_only=True
    )
    feedback: Literal["greedy", "retokenize"] = hparam(
        "greedy", "code fed back by the direct rollout", finetune_only=True
    )
    samples: int = hparam(16, "sampled rollouts averaged by expected", ge=1, finetune_only=True)
    patch_weight: float = hparam(1.0, "next-patch regression weight (0: CE only)", ge=0)
    value_input: bool = hparam(True, "backbone also sees each patch's frames")
    query_weight: float = hparam(
        1.0, "spikes: hidden-token rate loss weight in phase A", ge=0, finetune_only=True
    )
    hide_ratio: float = hparam(
        0.25, "spikes: share of neurons / steps hidden in phase A", gt=0, lt=1, finetune_only=True
    )
    spikes: dict[str, Any] | None = hparam(
        None, "overrides of these keys on spiking recordings (e.g. shorter budgets)"
    )

    @model_validator(mode="after")
    def _spikes_overrides_are_keys(self) -> CalmHParams:
        _check_spikes_overrides(self)
        return self


class TokenizerHParams(HParams):
    """CalM's per-dataset tokenizer (config ``hparams.tokenizer``)."""

    tokenizer_path: str | None = hparam(None, "ignored (the tokenizer stage writes it)")
    patch: int = hparam(4, "frames per patch", ge=1)
    vocab_size: int = hparam(64, "codebook size", ge=2)
    quantizer: Literal["fsq", "gumbel"] = hparam("fsq", "quantiser")
    width: int = hparam(32, "encoder/decoder width", ge=1)
    heads: int = hparam(2, "attention heads", ge=1)
    layers: int = hparam(0, "causal transformer layers per side", ge=0)
    conv_channels: int = hparam(8, "patch convolution channels", ge=1)
    ortho_weight: float = hparam(0.1, "Gumbel orthogonality weight", ge=0)
    kl_weight: float = hparam(1.0, "Gumbel usage (KL) weight", ge=0)
    steps: int = hparam(300, "training steps", ge=1)
    batch_size: int = hparam(64, "windows per batch", ge=1)
    lr: float = hparam(3e-3, "learning rate", gt=0)
    tau_start: float = hparam(1.0, "Gumbel temperature at the start", gt=0)
    tau_end: float = hparam(0.3, "Gumbel temperature at the end", gt=0)
    vocab_sweep: list[int] = hparam([16, 64, 256], "codebook sizes of the report's sweep")
    alternative_quantizer: Literal["fsq", "gumbel", "none"] = hparam(
        "gumbel", "quantiser trained for comparison (none: skip)"
    )
    sweep_steps: int | None = hparam(None, "steps of the sweep's models (None: steps)", ge=1)
    spikes: dict[str, Any] | None = hparam(
        None, "overrides of these keys for the spiking tokenizer"
    )

    @model_validator(mode="after")
    def _spikes_overrides_are_keys(self) -> TokenizerHParams:
        _check_spikes_overrides(self)
        return self


def _check_spikes_overrides(values: HParams) -> None:
    """A ``spikes`` mapping holds valid keys of the same model (a typo fails at planning)."""
    overrides = getattr(values, "spikes", None)
    if overrides is None:
        return
    if "spikes" in overrides:
        raise ValueError("'spikes' overrides cannot nest another 'spikes'")
    base = values.model_dump(exclude={"spikes"}, exclude_unset=True)
    type(values)(**(base | overrides))


class BaselineHParams(HParams):
    """Simple baselines and the oracle (:mod:`neurossl.methods.baselines`)."""

    context: int = hparam(32, "calcium forecasting context steps", ge=1)
    horizon: int = hparam(16, "calcium forecasting horizon steps", ge=1)
    forecast_fraction: float = hparam(0.1, "spiking forecast query: share of bins", gt=0, lt=1)
    ar_order: int = hparam(8, "context steps the ridge forecasters see", ge=1)
    ar_population: bool = hparam(True, "linear_ar appends the population mean")
    hidden: int = hparam(64, "rnn / poco hidden width", ge=1)
    steps: int = hparam(300, "rnn / poco training steps", ge=1)
    lr: float = hparam(3e-3, "rnn / poco learning rate", gt=0)
    batch_size: int = hparam(64, "rnn / poco windows per batch", ge=1)
    smooth_bins: float = hparam(2.0, "Gaussian smoothing of spike features (bins)", ge=0)
    rate_floor: float = hparam(0.05, "spike predictions >= this share of the train mean", ge=0)
    decode_chunks: int = hparam(1, "time chunks of trial features", ge=1)


def docs() -> str:
    """``docs/hparams.md``: one section per model of the method table, plus the tokenizer."""
    users: dict[str, list[str]] = {}
    for spec in catalog.BUILTIN_METHODS:
        users.setdefault(spec.hparams, []).append(spec.name)
    users.setdefault(catalog.TOKENIZER_HPARAMS, []).append("tokenizer (hparams.tokenizer)")
    parts = [
        "# Hyper-parameters\n\n"
        "Generated from `src/neurossl/methods/hparam_models.py` by "
        "`python -m neurossl.methods.hparam_models > docs/hparams.md`; a test keeps it "
        "current. Set them per method under `hparams:` in the config; `snakemake -n` "
        "rejects an unknown or mistyped key, naming the method and the key.\n"
    ]
    for path, methods in users.items():
        model = model_of(path)
        parts.append(markdown(model.__name__, model, methods))
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(docs())
