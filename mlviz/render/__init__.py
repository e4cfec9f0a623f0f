"""Renderers: one analysis result in, one matplotlib figure out. Nothing here computes statistics."""
