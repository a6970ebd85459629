"""``python -m core.worker``: the worker server (:mod:`core.worker.server`)."""
import sys

from .server import main

sys.exit(main())
