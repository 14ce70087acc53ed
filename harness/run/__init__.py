"""Run: a built artifact loaded by a runtime and fed a dataset's images, each call bounded.

Owns the preprocessing / postprocessing path (``pipeline``), the sessions of one pytest session (``sessions``) and
what bounds every call: the bounds and the faults past them (``bounds``), worker processes (``isolation`` the
parent's side and the ``--isolation`` settings, ``worker`` the child's) and, for work in pytest's own process, the
watchdog (``watchdog``); the runtimes themselves are the public extension package :mod:`harness.runtimes`, in this
layer too. May import the build and data layers.
"""
