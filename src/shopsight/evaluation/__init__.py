"""Honest evaluation: metrics, bounded-memory ranking, named protocols, experiments, tuning.

Submodules are imported on use (``from shopsight.evaluation.experiment import Experiment``), so
``import shopsight.evaluation`` stays light.
"""
