"""The chaos harness: a verifying workload under injected faults (see runner.py)."""
