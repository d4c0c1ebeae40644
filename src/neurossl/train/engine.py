"""The one training loop every neural method uses.

Methods supply a model and a ``loss_fn(model, batch) -> (loss, metrics)``; the engine
owns everything that must be done the same way for all of them so their numbers are
comparable and their jobs survive a cluster: AdamW with warm-up + cosine, bf16 autocast
on CUDA (fp32 on CPU), gradient clipping, best-on-validation selection with early
stopping, a per-step CSV log, atomic checkpoints and exact resumption, and DDP under
``torchrun``.

Exact resumption: the batch of global step ``k`` is a pure function of the loader seed
and ``k`` (:mod:`neurossl.data.loader`), the RNG streams (python, numpy, torch, CUDA)
are saved with the weights, and validation draws its masks inside a forked RNG with a
fixed seed, so it neither perturbs training nor changes between evaluations. A killed
CPU job rerun therefore ends with bit-identical weights and log values.

``loss_fn`` receives the DDP-wrapped (or compiled) model under DDP, so it must reach the
model only through ``model(...)``.

Short fits run through the same loop: the tokenizer, CalM's head probe and the trained
forecasters. They pass batch sources from :mod:`neurossl.train.sources` (rows drawn from
in-memory tensors, or a fixed list of full batches that counts as one step), no
checkpoint folder (weights of the best validation are then kept in memory), and their
optimiser settings (betas, the final LR fraction ``lr_floor``, a per-step hook for
non-LR schedules such as the tokenizer's temperature) as :class:`TrainConfig` fields, so
every fit shares the optimiser set-up, autocast, clipping, progress lines and logging.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from neurossl.device import autocast
from neurossl.train import checkpoint
from neurossl.train.distributed import DistInfo, all_agree, barrier, init_distributed
from neurossl.train.optim import (
    TRANSFORMER_BETAS,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
    trainable_parameters,
)
from neurossl.train.progress import Progress
from neurossl.train.runtime import rng_state, seed_everything, set_rng_state
from neurossl.train_logs import LIVE_LOG, StepLog, publish

logger = logging.getLogger("neurossl")

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict[str, float]]]


class BatchSource(Protocol):
    """What the engine trains on: :class:`neurossl.data.loader.WindowLoader` or a source
    of :mod:`neurossl.train.sources`. A step's item is a batch, or a list of batches that
    form one step together (their loss is the row-weighted mean; gradients accumulate)."""

    def iter_from(
        self, step: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch | list[Batch]]: ...


#: Settings that must not change between a killed run and its resumption.
_RESUME_KEYS = ("max_steps", "lr", "weight_decay", "warmup_steps", "batch_size", "seed")


@dataclass
class TrainConfig:
    max_steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    batch_size: int = 16
    eval_every: int = 25
    checkpoint_every: int = 50
    #: Evaluations without improvement before stopping; 0 never stops early.
    patience: int = 0
    grad_clip: float = 1.0
    seed: int = 0
    compile: bool = False
    #: Name filter of the parameters that train (None: all); the others are frozen.
    trainable: Callable[[str], bool] | None = None
    #: Draw a progress bar when stderr is a terminal (log lines are written regardless).
    progress: bool = True
    #: A progress line (step, loss, validation loss, steps/s, ETA) every this many steps.
    log_every: int = 50
    #: Name of the run in its progress lines ("train", "tokenizer", "probe", ...).
    desc: str = "train"
    #: AdamW's betas (the transformer recipe; short fits use torch's default).
    betas: tuple[float, float] = TRANSFORMER_BETAS
    #: LR at ``max_steps`` as a fraction of the peak (0: cosine to zero, 1: constant).
    lr_floor: float = 0.1
    #: Called with the step index (0-based) before each step: schedules other than the LR.
    before_step: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.patience < 0 or self.grad_clip < 0:
            raise ValueError(f"TrainConfig has a negative or zero setting: {self}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"TrainConfig.lr_floor must be in [0, 1], got {self.lr_floor}")


@dataclass(frozen=True)
class TrainResult:
    best_step: int
    best_valid_loss: float
    last_step: int
    stopped_early: bool
    #: Step of the checkpoint this call resumed from (None: started fresh).
    resumed_from: int | None
    #: Training loss of the last step this call ran (NaN when it ran none).
    last_loss: float = math.nan


def train(
    model: nn.Module,
    loss_fn: LossFn,
    train_loader: BatchSource,
    valid_loader: Iterable[Batch] | None,
    config: TrainConfig,
    checkpoint_dir: Path | None,
    log_path: Path | None,
    device: str,
) -> TrainResult:
    """Train ``model`` in place; on return it holds the best-on-validation weights.

    The per-step log lives in ``checkpoint_dir`` (it must outlive a killed job whose
    outputs Snakemake deletes) and is published whole to ``log_path`` on return, also
    when the run had already finished and nothing trained. Without ``checkpoint_dir``
    (short fits) nothing is saved or resumed, the best weights are kept in memory and
    the log, if ``log_path`` is given, is written there directly.
    """
    log_path = None if log_path is None else Path(log_path)
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    info, device = init_distributed(device)
    if info.is_main:
        logger.info("training on %s, %d process(es): %s", device, info.world_size, config.desc)
    seed_everything(config.seed)
    model.to(device)
    params = trainable_parameters(model, config.trainable)
    frozen = _freeze_others(model, {n for n, _ in params})
    optimizer = make_optimizer(params, config.lr, config.weight_decay, config.betas)
    scheduler = make_scheduler(optimizer, config.warmup_steps, config.max_steps, config.lr_floor)
    state = _RunState()
    resumed = None if checkpoint_dir is None else checkpoint.latest(checkpoint_dir)
    if resumed is not None:
        payload = checkpoint.load(resumed)
        _check_resumable(payload, config, resumed)
        model.load_state_dict(payload["model"])
        load_optimizer_state(optimizer, payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        state = _RunState(**payload["state"])
    # Without a checkpoint folder the log (if any) is written straight to ``log_path``.
    live = log_path if checkpoint_dir is None else checkpoint_dir / LIVE_LOG
    writes = info.is_main and live is not None
    log = StepLog(live if live is not None else Path(), keep_until=state.step, enabled=writes)
    if not state.finished:
        _run(model, loss_fn, train_loader, valid_loader, config, checkpoint_dir, log, device,
             info, optimizer, scheduler, state)  # fmt: skip
    if writes and log_path is not None and log_path.resolve() != Path(live).resolve():
        publish([(None, live)], log_path)
    barrier(info)
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    elif checkpoint_dir is not None and (checkpoint_dir / checkpoint.BEST).exists():
        model.load_state_dict(checkpoint.load(checkpoint_dir / checkpoint.BEST)["model"])
    for parameter in frozen:
        parameter.requires_grad_(True)
    return TrainResult(
        best_step=state.best_step,
        best_valid_loss=state.best_valid,
        last_step=state.step,
        stopped_early=state.stopped_early,
        resumed_from=None if resumed is None else int(payload["state"]["step"]),
        last_loss=state.last_loss,
    )


@dataclass
class _RunState:
    step: int = 0
    best_valid: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    finished: bool = False
    #: Best weights of a run without a checkpoint folder, and the last step's loss:
    #: what this call reports, not what a checkpoint keeps.
    best_weights: dict[str, Tensor] | None = None
    last_loss: float = math.nan

    def saved(self) -> dict:
        """What a checkpoint keeps."""
        skip = ("best_weights", "last_loss")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def _run(
    model: nn.Module,
    loss_fn: LossFn,
    train_loader: BatchSource,
    valid_loader: Iterable[Batch] | None,
    config: TrainConfig,
    checkpoint_dir: Path | None,
    log: StepLog,
    device: str,
    info: DistInfo,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: _RunState,
) -> None:
    wrapped: nn.Module = model
    if info.enabled:
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        # Per-session stitchers: each batch touches one session's, the rest are unused.
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=True
        )
    if config.compile:
        wrapped = torch.compile(wrapped)
    batches = train_loader.iter_from(state.step, info.rank, info.world_size)
    progress = Progress(
        config.max_steps,
        state.step,
        config.log_every,
        enabled=info.is_main,
        bar=config.progress,
        desc=config.desc,
    )
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    while state.step < config.max_steps:
        started = time.perf_counter()
        item = next(batches)
        parts = [_to_device(b, device) for b in (item if isinstance(item, list) else [item])]
        if config.before_step is not None:
            config.before_step(state.step)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = _accumulate(wrapped, loss_fn, parts, device, state.step)
        grad_norm = nn.utils.clip_grad_norm_(trained, config.grad_clip or math.inf)
        optimizer.step()
        scheduler.step()
        state.step += 1
        row: dict[str, float] = {
            "step": state.step,
            "lr": scheduler.get_last_lr()[0],
            "loss": float(loss.detach()),
            "grad_norm": float(grad_norm),
            "valid_loss": math.nan,
        }
        row.update({k: float(v) for k, v in metrics.items()})
        state.last_loss = row["loss"]
        if state.step % config.eval_every == 0 or state.step == config.max_steps:
            valid = _validate(model, loss_fn, valid_loader, config.seed, device)
            row["valid_loss"] = valid
            _update_best(model, state, valid, checkpoint_dir, info)
        row["seconds"] = time.perf_counter() - started
        log.write(row)
        progress.update(state.step, row["loss"], row["valid_loss"])
        stop = config.patience > 0 and state.bad_evals >= config.patience
        stop = all_agree(info, stop)
        state.stopped_early = stop
        state.finished = stop or state.step >= config.max_steps
        if state.step % config.checkpoint_every == 0 or state.finished:
            _save_last(model, optimizer, scheduler, state, config, checkpoint_dir, info)
        if stop:
            break
    progress.close()


def _validate(
    model: nn.Module, loss_fn: LossFn, loader: Iterable[Batch] | None, seed: int, device: str
) -> float:
    """Window-weighted mean loss over the validation split, with the same masks each time."""
    if loader is None:
        return math.nan
    model.eval()
    total, count = 0.0, 0
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1)
        for batch in loader:
            n = _rows(batch)
            with autocast(device):
                loss, _ = loss_fn(model, _to_device(batch, device))
            total += float(loss) * n
            count += n
    return total / max(count, 1)


def _update_best(
    model: nn.Module, state: _RunState, valid: float, checkpoint_dir: Path | None, info: DistInfo
) -> None:
    # Without a validation split the latest weights count as the best.
    if math.isnan(valid) or valid < state.best_valid:
        state.best_valid, state.best_step, state.bad_evals = valid, state.step, 0
        if checkpoint_dir is None:
            # The final weights are the latest ones, so only a validated best is copied.
            state.best_weights = None if math.isnan(valid) else _copy(model)
        elif info.is_main:
            checkpoint.save(
                checkpoint_dir / checkpoint.BEST,
                {"model": model.state_dict(), "step": state.step, "valid_loss": valid},
            )
    else:
        state.bad_evals += 1


def _save_last(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: _RunState,
    config: TrainConfig,
    checkpoint_dir: Path | None,
    info: DistInfo,
) -> None:
    if not info.is_main or checkpoint_dir is None:
        return
    checkpoint.save(
        checkpoint_dir / checkpoint.LAST,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "state": state.saved(),
            "config": {k: getattr(config, k) for k in _RESUME_KEYS},
        },
    )


def _check_resumable(payload: dict, config: TrainConfig, path: Path) -> None:
    saved = payload.get("config", {})
    changed = {k: (saved.get(k), getattr(config, k)) for k in _RESUME_KEYS}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    if changed:
        raise ValueError(
            f"{path}: checkpoint was written with other settings {changed} (saved, now); "
            "delete the checkpoint directory to start over"
        )


def _freeze_others(model: nn.Module, names: set[str]) -> list[nn.Parameter]:
    frozen = []
    for name, parameter in model.named_parameters():
        if name not in names and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen.append(parameter)
    return frozen


def _accumulate(
    model: nn.Module, loss_fn: LossFn, parts: list[Batch], device: str, step: int
) -> tuple[Tensor, dict[str, float]]:
    """Backward of a step's parts, each weighted by its share of the step's rows; returns
    the step's loss and metrics (row-weighted means). One part is an ordinary step."""
    rows = [_rows(b) for b in parts]
    total_loss = torch.zeros((), device=device)
    totals: dict[str, float] = {}
    for batch, n in zip(parts, rows, strict=True):
        with autocast(device):
            loss, metrics = loss_fn(model, batch)
        if not loss.requires_grad:
            raise ValueError(
                f"step {step}: the loss does not depend on any trainable parameter "
                "(does the trainable filter exclude everything this batch uses?)"
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {step}")
        share = n / sum(rows)
        (loss * share if len(parts) > 1 else loss).backward()
        total_loss += loss.detach().float() * share
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * share
    return total_loss, totals


def _rows(batch: Batch) -> int:
    """Rows (windows, samples) of a batch: its ``activity``'s, else its first tensor's."""
    first = batch["activity"] if "activity" in batch else next(iter(batch.values()))
    return int(first.shape[0])


def _copy(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _to_device(batch: Batch, device: str) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
