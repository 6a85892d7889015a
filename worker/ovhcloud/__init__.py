"""Everything that talks to OVHcloud's API: the client, the gateway, retries, the shared rate limiter."""
