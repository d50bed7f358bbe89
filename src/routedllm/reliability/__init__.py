"""Reliability: the attempt loop, the circuit breaker and spend budgets."""
