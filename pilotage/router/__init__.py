"""Pilotage router."""
