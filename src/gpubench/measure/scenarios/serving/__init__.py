"""The serving scenarios (MLPerf Inference's LoadGen scenarios): what they share
(base.py), the streams and offline (streams.py), the server (server.py) with its
arrivals (arrivals.py) and dynamic batcher (batcher.py), the latency percentiles a run
can claim (early_stopping.py), and their options (options.py). Importing this package
imports no loop."""

SERVING_SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
