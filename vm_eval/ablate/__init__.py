"""Ablation grids: variants as config overrides, trained and scored on the same clips, paired statistics."""
