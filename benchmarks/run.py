"""1080p frame times of every espcn_fast backend next to what users would run instead.

    python benchmarks/run.py                      # the whole suite on this machine's device
    python benchmarks/run.py --quick              # a smoke run
    python benchmarks/run.py --help               # the options

The benchmark itself is espcn_fast.benchmark (also ``python -m espcn_fast.benchmark``).
"""

import sys

from espcn_fast.benchmark.malloc_env import reexec_with_malloc_env

if __name__ == "__main__":
    reexec_with_malloc_env()  # before torch is imported: glibc reads its settings at start

from espcn_fast.benchmark.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
