"""Data: what a run is about, read and checked before anything is built.

Owns the case schema and its items (``cases``), the preprocessing recipes (``recipes``), the datasets and their
ground truth (``datasets``, ``catalogue``) and the colour-channel orders (``channels``). The bottom layer with
:mod:`harness.machine`: it imports nothing of the harness above it.
"""
