"""A real Kubernetes control plane for the tests: Go-built binaries and a node agent.

Test-only: nothing under `pilotage/` imports it, and no image ships it.
"""
