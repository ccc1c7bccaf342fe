"""Fixtures of the attack tests: the router tests' stand-in upstreams and routers."""

from tests.router.conftest import start_router, start_upstream

__all__ = ["start_router", "start_upstream"]
