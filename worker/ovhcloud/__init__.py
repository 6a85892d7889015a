"""Everything that talks to OVHcloud's API: the client, the gateway and its error classes, the shared
rate limiter, the background calls (below every send lane) and the caches they keep (senders,
blacklist)."""
