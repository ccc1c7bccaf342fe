"""Pilotage drift."""
