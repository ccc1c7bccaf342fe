"""The errors the local command line prints as one line (shared by `pilotage up`, the
`--kube` actions and the dashboard, so that none of them imports another's module)."""

from __future__ import annotations


class CliError(Exception):
    """A problem to print as one line."""


class Forbidden(CliError):
    """The cluster refused the request for lack of permission (HTTP 403)."""
