"""Benchmark 4: the broadcast of benchmark 1 with 1, 2 and 4 worker processes.

The same load as ``bench_broadcast.py`` (100,000 single-receiver requests, same text), run once
per process count on a fresh Redis and sandbox, for this project's worker (``sms-worker run``
processes sharing the buffers and the rate limit through Redis) and for the naive worker
(dramatiq CLI ``-p N``, measured over a window). Every flag of ``bench_broadcast.py`` applies.

    python benchmarks/bench_scale.py [--processes 1,2,4] [--requests 100000] [--base DIR] [--naive-seconds 60] [--quick]
"""

from __future__ import annotations

import sys

import bench_broadcast

if __name__ == "__main__":
    sys.exit(bench_broadcast.main(default_processes="1,2,4"))
