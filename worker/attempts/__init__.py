"""The attempt lifecycle: one OVH jobs call, from the receivers it claims to its settlement.

Read in this order:

- ``lifecycle``: the state machine (claimed, calling, settled, ambiguous) and every transition,
  each one Lua step in ``lua/`` (``claim``, ``attempt``, ``release``, ``takeover``, ``settle``,
  ``reconcile_pick``), each tokened so that it survives a lost reply;
- ``steps``: each of those steps' keys, document and reply, typed;
- ``lease``: each worker's lease, which fences its attempts; the sweep that takes over the
  attempts of a worker whose lease expired;
- ``dispatcher``: the loop that takes a rate-limit slot, claims what is due, calls OVH and settles;
- ``settlement``: what a call did for each request (from OVH's answer, a refusal, or what
  reconciliation found);
- ``reconcile``: what OVH really did with an ambiguous call, from its records, before anything
  is sent again;
- ``bulk``: the same lifecycle for a call whose receivers are a document (bulk campaigns):
  keyed by the document, proof by the campaign's tag.
"""
