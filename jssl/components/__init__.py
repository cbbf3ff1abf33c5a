"""Reusable pieces of method state (memory banks, ...) as pure functions."""
