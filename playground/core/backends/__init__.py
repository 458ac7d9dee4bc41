"""Backends: what computes the logits behind the Engine's chat loop.

torch is the Engine itself (``core/engine.py`` with the lean decode step and the
optimizations in ``core/optimize``); every other backend is a module pair here, an
exporter/loader and an Engine subclass that keeps the loop, the TokenTimeline and
the caches and swaps only the step: so TTFT, ITL and decode mean the same for all.
"""
