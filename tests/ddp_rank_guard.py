"""``fwi-attn`` for torchrun in tests/test_distributed.py, with the project's write paths
(:func:`fwi_attn.data.store.atomic_path`, through which every output is written, and
``torch.save``) refused on every rank but 0: a rank that tried to write would fail the run."""
import os
import sys

import torch

import fwi_attn.data.store as store
import fwi_attn.learn.train as train
from fwi_attn.cli import main

if int(os.environ.get("RANK", "0")) != 0:
    def refuse(*args, **kwargs):
        raise AssertionError(f"rank {os.environ['RANK']} tried to write {args[0] if args else '?'}")

    store.atomic_path = train.atomic_path = torch.save = refuse

sys.exit(main(sys.argv[1:]))
