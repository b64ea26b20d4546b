"""Generation as it is served (--mode generate): a prompt's prefill, then greedy decode
steps over a static KV cache. engine.py declares what a backend's step gives (a
GenerationEngine); latency.py turns each request's token times into TTFT, TPOT, ITL and
goodput, the same for every scenario that generates; prompts.py draws the prompts a
server is sent (--prompt-dist) and batching.py forms its batches (--batching)."""

# How a generation server forms its decode batch (batching.py), declared where the
# options can name them without importing a loop.
BATCHING = ("continuous", "static")
