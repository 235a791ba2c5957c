"""Shared foundations: settings, telemetry, errors and types. Imports no other package of ours."""
