"""Pilotage local."""
