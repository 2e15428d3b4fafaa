"""The evaluate stage: the deployable GGUF files scored on a module's held-out split, base → tuned,
and the promotion gate and champion registry that decide what a run publishes."""
