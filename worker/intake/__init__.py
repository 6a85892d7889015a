"""Intake: a send request from its queue to the batch buffers, or to a ``rejected`` result.

- ``accept``: one dramatiq actor per lane: parse and validate, normalize receivers
  (``worker.phones``), mail merge (``mailmerge``), price (``worker.accounting``), policy, then
  dedupe + reserve quota + stage in one Lua step (``worker.batching``);
- ``policy``: senders, blacklist and opt-outs, checked from caches the background jobs keep;
- ``dead_letters``: the lanes' dead-letter queues (``sms-worker dlq``): list, show, replay, drop.
"""
