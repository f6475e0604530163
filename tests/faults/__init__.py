"""Fault injection: cut/refused/paused connections, killed consumers, broker restarts,
rebalances and poison messages, each checked for lost events, effects applied twice and
dead letters written other than exactly once."""
