"""vm-eval: evaluation and benchmarking suite for video-to-music generation (the harness package)."""
from vm_eval import compat as _compat

_compat.install()

__version__ = "0.1.0"
