"""Adapters that map other problems onto the Parareal engine."""
