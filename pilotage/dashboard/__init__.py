"""The web dashboard: server-rendered pages of the four kinds, live charts, and the
promote/abort/retry/retrain buttons — served by `pilotage up` and by
`pilotage dashboard [--kube]` (see docs/dashboard.md)."""
