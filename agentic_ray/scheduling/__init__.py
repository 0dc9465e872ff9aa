"""agentic_ray.scheduling (being built)."""
