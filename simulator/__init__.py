"""A team of simulated labelers that plays the RLHF loop through the platform's REST API.

Proves that the loop makes a model better: the labelers share a hidden preference (``preferences``)
that only the simulator knows, rank with calibrated noise (``noise``), write demonstrations from a
source of good answers (``answers``); the loop trains on what they produce; the report (``report``)
judges the resulting policies by the noise-free hidden preference and sets the platform's own figures
beside that ground truth. The package talks HTTP with the standard library only (``client``): no
Django, no platform code (import-linter checks it), so the same simulator drives a live server from
``python -m simulator`` and ``bench/simulated_loop.py`` and the suite's live test server.
"""
