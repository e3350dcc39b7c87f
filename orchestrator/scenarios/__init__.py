"""Scenarios: what the rig checks inside a booted host, one module each."""
