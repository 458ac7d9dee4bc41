"""Entry point of the packaged app: point the core at the bundled model and assets."""

import os
import sys
from pathlib import Path

if getattr(sys, "frozen", False):
    bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
    os.environ.setdefault("PLAYGROUND_ASSETS", str(bundle / "assets"))
    os.environ.setdefault("PLAYGROUND_DEFAULT_GGUF",
                          str(bundle / "model" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PLAYGROUND_QGEMV", str(bundle / "native" / "qgemv.so"))

from playground.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
