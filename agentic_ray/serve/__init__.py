"""agentic_ray.serve (being built)."""
