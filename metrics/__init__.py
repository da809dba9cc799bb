"""Pure scoring code. Metrics take arrays and clip facts, never files or models; the harness feeds them.

This package imports no model code (vidmusician, baselines) and no harness code (vm_eval).
"""
