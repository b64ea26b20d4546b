"""Scenarios: what a run measures and how its loop goes (base.py), found by name
(registry.py): throughput, time-to-accuracy, collective, and the serving ones (serving/).
Importing this package imports no loop."""
