"""Record: what a run leaves behind, and what runs say together.

Owns the report rows and summary files (``report``), the run journal (``journal``), the run records and the
night-over-night trend with its plots (``history``). May import judge and everything below it (the trend judges
paired differences with the judge's statistics).
"""
