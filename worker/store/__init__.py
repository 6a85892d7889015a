"""Redis: every key the worker writes (``keys``), the Lua scripts (``lua/``) and dramatiq's queue layout."""
