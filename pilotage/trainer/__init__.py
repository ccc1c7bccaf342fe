"""Pilotage trainer."""
