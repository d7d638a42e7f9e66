"""adlib: helper package for the course on unsupervised visual anomaly detection.

Nothing happens at import time: submodules are imported explicitly
(``from adlib import metrics``).
"""

__version__ = "0.2.0"
