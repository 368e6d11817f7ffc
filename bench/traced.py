"""uvicorn with ``tracemalloc`` on: ``SIGUSR1`` writes a snapshot (``--profile memory``).

``python -m bench.traced <uvicorn arguments>`` runs uvicorn in this process
with tracemalloc tracing ``BENCH_TRACEMALLOC_FRAMES`` frames (default 12);
each ``SIGUSR1`` collects garbage and writes
``$BENCH_TRACEMALLOC_DIR/snapshot-<n>.pickle`` (written whole, then renamed).
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
    """Start tracing, install the snapshot signal, run uvicorn's command line."""
    out = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "12")))
    numbers = itertools.count(1)

    def dump(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        path = out / f"snapshot-{next(numbers)}.pickle"
        partial = path.with_suffix(".tmp")
        tracemalloc.take_snapshot().dump(str(partial))
        partial.replace(path)

    signal.signal(signal.SIGUSR1, dump)
    from uvicorn.main import main as uvicorn_main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
