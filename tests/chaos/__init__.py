"""Chaos test: the real gateway under kill -9, behind stand-ins that hide nothing (issue 13)."""
