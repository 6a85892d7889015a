"""Developer tools on one machine: a private Redis, the demo (``sms-worker demo``).

Never imported by ``sms-worker run``, ``sms-worker inbound`` or any production module, and not
copied into the image (the layering contract in pyproject.toml, tests/test_layers.py).
"""
