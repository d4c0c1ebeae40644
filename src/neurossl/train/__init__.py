"""Training engine: loop, optimiser and schedule, checkpoints, runtime and DDP."""
