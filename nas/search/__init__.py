"""The search: the Optuna driver loop, its config, samplers, the latency guard and the shared-study protocol."""
