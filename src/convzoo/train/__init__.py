"""Training with any family: data specs, the loop (resume, torchrun), checkpoints, family rules, sweeps."""
