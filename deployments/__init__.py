"""Where qsflow's programs are registered and served: the embedded server, deployments, the CLI."""
