"""Items: one pytest session's view of the pipeline, resolving each case item once.

Owns the session's settings (``settings``), its suite of cached artifacts, loaded sessions, golden stores and
reference outputs (``suite``), each item resolved once to what its checks take (``handle``) and the session-wide
state the plugin keeps (``state``). May import record and every layer below; checks and diagnostics import it, never
the plugin.
"""
