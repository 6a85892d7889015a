"""Batch buffers: accepted receivers waiting in Redis to share one OVH jobs call.

``buffers``: the batch key, the entries, staging (``lua/stage.lua``, ``lua/reject.lua``) and the
dispatchers' look for the next due buffer (``lua/peek.lua``). Claiming from a buffer belongs to
the attempt lifecycle (``worker.attempts``).
"""
