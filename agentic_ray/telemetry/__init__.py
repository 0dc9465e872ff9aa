"""agentic_ray.telemetry (being built)."""
