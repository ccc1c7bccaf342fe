"""Pilotage server."""
