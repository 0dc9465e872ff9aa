"""agentic_ray.sim (being built)."""
