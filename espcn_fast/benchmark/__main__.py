"""``python -m espcn_fast.benchmark``: the benchmark of :mod:`espcn_fast.benchmark.cli`."""

import sys

from .malloc_env import reexec_with_malloc_env

reexec_with_malloc_env(["-m", "espcn_fast.benchmark"])

from .cli import main  # noqa: E402  (after the re-exec: torch is imported there)

sys.exit(main())
