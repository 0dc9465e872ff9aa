"""``python -m agentic_ray`` runs the command line."""

import sys

from agentic_ray.cli import main

sys.exit(main())
