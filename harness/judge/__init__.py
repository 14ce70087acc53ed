"""Judge: turns outputs into verdicts, the same way for every runtime.

Owns the metrics (``metrics``, via pysodmetrics), the budgets and statistics of each verdict (``judgement``), the
structure checks (``structure``), the golden masks (``golden``) and latency statistics (``perf``). May import the
run, build and data layers; knows nothing of pytest or of where verdicts are written.
"""
