"""Evaluation, calibration and fairness: the numbers behind every threshold.

Pure metric functions live in :mod:`faceledger.evaluate.metrics` (numpy only, no models); dataset loading in
:mod:`faceledger.evaluate.datasets`; the embedding cache in :mod:`faceledger.evaluate.cache`; the end-to-end
runner that embeds a dataset with the :class:`~faceledger.Engine` in :mod:`faceledger.evaluate.runner`.
"""
