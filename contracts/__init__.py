"""The wire contract of ovh-sms-worker: models, JSON Schema files, producer and result helpers.

This package never imports ``ovh``: services that only publish requests and read results
depend on it alone.
"""
