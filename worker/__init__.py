"""ovh-sms-worker: the consumer side (stages, OVH gateway, quotas, rate limiting, sandbox, CLI)."""
