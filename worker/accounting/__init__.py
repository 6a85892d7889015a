"""Credits and quotas: what a send costs, what each user may still spend."""
