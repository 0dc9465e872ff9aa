"""agentic_ray.policies (being built)."""
