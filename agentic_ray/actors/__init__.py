"""agentic_ray.actors (being built)."""
