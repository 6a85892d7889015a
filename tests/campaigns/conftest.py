"""Fixtures of the campaign tests: ``sms-worker inbound`` (bulk documents, callbacks) as a real process."""

from tests.after_send.conftest import inbound_env, start_inbound  # noqa: F401 (fixtures)
