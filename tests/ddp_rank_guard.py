"""``fwi-attn`` for torchrun in tests/test_distributed.py, with the project's write paths
(:func:`fwi_attn.io.files.atomic_path`, through which every output is written, and
``torch.save``) refused on every rank but 0: a rank that tried to write would fail the run."""
import os
import sys

import torch

import fwi_attn.learn.train  # noqa: F401 (loads the modules whose writes are refused)
from fwi_attn.cli import main

if int(os.environ.get("RANK", "0")) != 0:
    def refuse(*args, **kwargs):
        raise AssertionError(f"rank {os.environ['RANK']} tried to write {args[0] if args else '?'}")

    # Every module holding its own reference to atomic_path, not only the one that defines it.
    for module in [m for name, m in sys.modules.items() if name.startswith("fwi_attn")]:
        if hasattr(module, "atomic_path"):
            module.atomic_path = refuse
    torch.save = refuse

sys.exit(main(sys.argv[1:]))
