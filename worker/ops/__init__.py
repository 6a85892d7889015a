"""Operations: what ops see of a running worker.

- ``logs``: logging configured once (text or JSON, one record per line), phone masking, and a
  filter that turns a loop's repeated error line into one line per interval with a count;
- ``metrics``: the Prometheus metrics of one app (its own ``CollectorRegistry``), gauges that
  read Redis computed at scrape time;
- ``health``: the liveness registry the long-running loops tick;
- ``readiness``: Redis answers, OVH accepts the credentials, the default sender is usable;
- ``telemetry``: the one object the pipeline reports its events to (metrics + INFO lines);
- ``endpoints``: ``/metrics``, ``/healthz`` and ``/readyz`` on ``SMS_WORKER_METRICS_PORT``.
"""
