"""ovh-sms-worker: the consumer side (intake, batching, attempts, OVH gateway, accounting, after the send,
campaigns, operations, CLI). The OVH sandbox (``ovh_sandbox``) and the developer tools (``devstack``)
are packages of their own, outside the production path."""
