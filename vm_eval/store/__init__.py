"""The run store (one folder per run, atomic writes, resumable journals), provenance, and the feature cache."""
