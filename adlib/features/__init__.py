"""Pretrained-feature anomaly detection (chapter 06): backbones, their weights, embeddings.

:mod:`adlib.features.weights` (where each backbone's weights come from, hash-checked),
:mod:`adlib.features.backbones` (frozen feature extractors), :mod:`adlib.features.embed`
(locally aware patch embeddings); the detectors are :mod:`adlib.models.patchcore` and
:mod:`adlib.models.padim`. Nothing is loaded or downloaded at import time.
"""
