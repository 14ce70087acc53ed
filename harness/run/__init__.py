"""Run: a built artifact loaded by a runtime and fed a dataset's images, each call bounded.

Owns the preprocessing / postprocessing path (``pipeline``), the sessions of one pytest session (``sessions``) and
the worker processes and watchdog that bound every call (``isolation``); the runtimes themselves are the public
extension package :mod:`harness.runtimes`, in this layer too. May import the build and data layers.
"""
