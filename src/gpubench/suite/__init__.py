"""Suites: a YAML matrix expanded into runs, each executed in an isolated worker."""
