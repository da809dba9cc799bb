"""Compared systems: one adapter per published system, plus reference systems that need no weights."""
