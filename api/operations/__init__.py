"""The operator's JSON API: who am I, operations snapshot, dead letters, the audit trail,
drift. The console (``api.console``) calls these like any other client."""
