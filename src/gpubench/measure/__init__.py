"""The timing protocol and the orchestration of one run."""
