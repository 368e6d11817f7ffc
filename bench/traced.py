"""uvicorn with ``tracemalloc`` on demand: ``SIGUSR1`` writes a snapshot (``--profile memory``).

``python -m bench.traced <uvicorn arguments>`` runs uvicorn in this process.
The first ``SIGUSR1`` starts tracemalloc (``BENCH_TRACEMALLOC_FRAMES`` frames,
default 25; tracing from the start would slow Django's imports past the
bench's start timeout, and what was allocated before is not per connection
anyway); each ``SIGUSR1`` collects garbage and writes
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
    frames = int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "25"))
    numbers = itertools.count(1)

    def dump(signum: int, frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
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
