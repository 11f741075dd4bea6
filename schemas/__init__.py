"""The wire contract: pydantic models (one source of truth), decode, dead letters, event logs."""
