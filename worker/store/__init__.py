"""Redis: every key the worker writes (``keys``), the typed way to call Lua (``scripts``, shared
files in ``lua/``), and dramatiq's broker made poison-proof and stall-proof (``queues``)."""
