"""The optimizations, one module each, in the fixed order the pipeline applies them.

Order and why: structural changes first, on float32 weights (pruning needs real
values to score); then quantization (it freezes the weights); then device and
threads; compile last, on the finished engine.
"""

from playground.core.optimize.base import Build, Optimization, OptimizationError
from playground.core.optimize.compile import Compile
from playground.core.optimize.device import Device
from playground.core.optimize.draft import SpeculativeDraft
from playground.core.optimize.prune_magnitude import PruneMagnitude
from playground.core.optimize.prune_structured import PruneStructured
from playground.core.optimize.qat_weights import QatWeights
from playground.core.optimize.quant_bnb import QuantBnb
from playground.core.optimize.quant_dtype import QuantDtype
from playground.core.optimize.quant_dynamic import QuantDynamic
from playground.core.optimize.quant_gguf import QuantGguf
from playground.core.optimize.quant_weight import QuantWeight
from playground.core.optimize.variants import DistilledVariant

PIPELINE: tuple[Optimization, ...] = (
    DistilledVariant(),
    QatWeights(),
    PruneStructured(),
    PruneMagnitude(),
    QuantDtype(),
    QuantDynamic(),
    QuantWeight(),
    QuantGguf(),
    QuantBnb(),
    Device(),
    Compile(),
    SpeculativeDraft(),
)

__all__ = ["PIPELINE", "Build", "Optimization", "OptimizationError"]
