"""Campaigns: a contacts file sent as one request per row, and the per-tag statistics behind reports.

- ``contacts``: reads the cookbook's mail-merge CSV (and its usual variants) as a stream of rows.
- ``rows``: a row becomes a ``SendRequest`` or a reason to reject it; request ids derive from
  the campaign id and the row, so running the same command again resumes and sends nothing twice.
- ``rejects``: the rejects file. ``progress``: progress bars on stderr.
- ``send``: the ``campaign send`` loop (queue in chunks, resume, wait for results, summary).
- ``stats``: the worker's per-tag counters (``lua/_campaign.lua``), and the typed entry points
  delivery reports and STOP replies call. ``ptt``: what OVH's ptt codes mean.
- ``report``: a campaign's figures from those counters; ``html``: the same as a page of charts.
- ``bulk``: ``--via bulk``: the rows as OVH receivers documents (served by ``sms-worker inbound``);
  ``bulk_dispatch``: the thread of ``sms-worker run`` sending them, one jobs call each, under the
  bulk attempt lifecycle (``worker.attempts.bulk``); ``outcomes``: rows' results from callbacks
  (``callbacks``, in ``inbound``) and tag listings; ``control``: pause, resume, cancel, breaker.
"""
