"""Router implementations; build them by name with ``agentic_ray.scheduling.create_router``."""
