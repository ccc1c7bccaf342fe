"""Pilotage control."""
