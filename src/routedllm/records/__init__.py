"""Records of routed calls: the typed schema, sinks (memory, JSONL ledger, OpenTelemetry,
LangSmith) and the report that reads ledgers back."""
