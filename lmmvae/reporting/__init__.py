"""Benchmark reporting: the experiments of the workflow config (:mod:`.experiments`, validated by
:mod:`.schema`), metrics files -> ``results/metrics.csv`` (:mod:`.aggregate`), tables
(:mod:`.tables`) and figures (:mod:`.figures`). Nothing here imports torch at module level.
"""
