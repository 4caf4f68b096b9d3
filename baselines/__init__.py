"""Training recipes: optimizers, LR schedules and parametrizations (registered by module)."""
