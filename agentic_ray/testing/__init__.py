"""Test doubles users can reuse in their own tests (a manual clock, a fake NVML, ...).

Import the specific module: ``agentic_ray.testing.clock``, ``agentic_ray.testing.nvml``.
"""
