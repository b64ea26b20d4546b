"""Input data for benchmarks. Synthetic by default (as tf_cnn_benchmarks does): made
once with numpy, then moved to the device by the backend before any timing."""
