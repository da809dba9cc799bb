"""Pairwise listening tests: study design, rater server, storage and analysis."""
