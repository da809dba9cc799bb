"""Run an upstream script after seeding every generator it may use (runs under UPSTREAM's interpreter).

    python seeded.py --seed N [--path DIR]... -- SCRIPT [ARGS...]

Seeds Python's `random`, numpy's global generator and torch (CPU and CUDA; at the moment upstream imports it)
when they are importable, puts each --path (and the script's folder) first on sys.path, then runs SCRIPT as
__main__ with ARGS as its argv. The
seed is reduced modulo 2**32 (numpy's limit). This file must stay compatible with Python 3.7 and import nothing
from vm-eval: it runs in the upstream system's own environment.
"""
import argparse
import importlib.abc
import importlib.util
import os
import random
import runpy
import sys


def _seed_torch(torch, seed):
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class _SeedTorchOnImport(importlib.abc.MetaPathFinder):
    """Seeds torch right after upstream imports it (nothing can draw from its generator in between).

    Importing torch here eagerly would cost seconds per process for scripts that never use it.
    """

    def __init__(self, seed):
        self.seed = seed

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module, seed = spec.loader.exec_module, self.seed

        def exec_then_seed(module):
            exec_module(module)
            _seed_torch(module, seed)

        spec.loader.exec_module = exec_then_seed
        return spec


def seed_everything(seed):
    """Seed random, numpy and torch (now if imported, else the moment it is); returns the seed used."""
    seed = int(seed) % (2 ** 32)
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses upstream starts
    try:
        import numpy
        numpy.random.seed(seed)
    except ImportError:
        pass
    if "torch" in sys.modules:
        _seed_torch(sys.modules["torch"], seed)
    elif importlib.util.find_spec("torch") is not None:
        sys.meta_path.insert(0, _SeedTorchOnImport(seed))
    return seed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: seeded.py --seed N [--path DIR]... -- SCRIPT [ARGS...]")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="seeded.py")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--path", action="append", default=[])
    opts = parser.parse_args(argv[:cut])
    rest = argv[cut + 1:]
    if not rest:
        sys.exit("seeded.py: no script given after --")
    script = os.path.abspath(rest[0])
    for p in reversed([os.path.dirname(script)] + [os.path.abspath(p) for p in opts.path]):
        sys.path.insert(0, p)
    used = seed_everything(opts.seed)
    print("[vm-eval seeded.py] seed %d -> %s" % (used, script), flush=True)
    sys.argv = [script] + rest[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
