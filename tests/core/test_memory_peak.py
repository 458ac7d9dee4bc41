"""Peak RSS from the kernel's reset counter: a spike between two samples counts, and
a later, smaller measurement never carries an earlier, bigger one's peak."""

import sys

import pytest

from playground.core import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")


def spike(mb: int) -> None:
    block = bytearray(mb * 1_000_000)  # zero-filled: every page touched
    del block


def test_a_spike_between_samples_is_in_the_peak():
    with memory.RssSampler(hz=0.1) as sampler:  # no sample lands inside the spike
        before = memory.rss_mb()
        spike(200)
    assert sampler.kernel_counter
    assert sampler.peak_mb >= before + 180


def test_each_measurement_starts_from_its_own_baseline():
    with memory.RssSampler(hz=0.1) as big:
        spike(200)
    with memory.RssSampler(hz=0.1) as small:
        spike(20)
    assert small.peak_mb < big.peak_mb - 150


@pytest.mark.parametrize("spec", ["prune=0.5,prune_method=structured", "prune=0.5"])
def test_a_pruned_model_keeps_nothing_of_the_mapped_checkpoint(tiny_engine, spec):
    """Structured pruning made smaller matrices, but the embedding still viewed the
    memory-mapped file, which kept every page of the original weights resident: the
    pruned config showed a higher peak than the float one (1349 vs 1027 MB)."""
    engine = tiny_engine(spec)
    assert memory.own_memory(engine.model) == 0  # nothing left to copy out
