"""Closing the loop: label refinement, active-learning selection, corrections into datasets."""
