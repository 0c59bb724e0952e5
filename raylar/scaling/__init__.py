"""Scaling studies: the same training at several worker counts, with the study's figures.

``python -m raylar.scaling --workers 1,2,4 --model jishnet --budget 10m`` runs
it; ``raylar.scaling.study`` measures the runs, ``raylar.scaling.runner``
checks, runs and records them in MLflow, and ``raylar.scaling.figures`` draws
the figures and writes the summary table.
"""
