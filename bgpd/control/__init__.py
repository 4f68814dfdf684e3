"""The operator's surface: the BIRD-compatible control socket, show/health/stop commands."""
