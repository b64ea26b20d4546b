"""gpubench: a benchmark harness for deep-learning training and inference on GPUs.

Importing this package stays cheap: frameworks (torch, TensorFlow, ...) and pandas are
imported only by the code paths that need them.
"""

__version__ = "0.1.0"
