"""Quantized weights: the block formats, the kernels' weight layouts, the
scales' smoothing and quantization-aware training."""
