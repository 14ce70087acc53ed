"""Record: what a run leaves behind, and what runs say together.

Owns the report rows and summary files (``report``), the run journal (``journal``), the run records
(``run_records``) with what they keep of each image (``per_image``), and the night-over-night trend (``trend``; which
runs it compares, ``comparison``; its per-row rules, ``trend_rules``) with its plots (``plots``). May import judge and
everything below it (the trend judges paired differences with the judge's statistics).
"""
