"""Pilotage operator."""
