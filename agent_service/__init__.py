"""The reference Agent Service: `POST /api/respond` in front of a model (see docs/agent-service.md)."""
