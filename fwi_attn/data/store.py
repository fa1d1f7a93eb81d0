"""The names modules imported from here before :mod:`fwi_attn.io` (one module per persisted file)
took over the file formats and file safety; each now lives in its own module:

* :mod:`fwi_attn.io.hdf5`: checksums (``seal``, ``verify_meta``, ``verify_data``), checked opening
  (``open_result``), in-memory building (``write_h5``);
* :mod:`fwi_attn.io.files`: atomic writes (``atomic_path``, ``write_json``), fail-fast checks
  (``check_output``, ``check_space``), identities (``file_sha256``, ``check_distinct``);
* :mod:`fwi_attn.io.shard` and :mod:`fwi_attn.io.predictions`: the two HDF5 formats.

New code imports them from there.
"""
from __future__ import annotations

from fwi_attn.io.files import atomic_path, check_distinct, check_output, check_space, file_sha256, write_json
from fwi_attn.io.hdf5 import ChecksumError, open_result, seal, verify_data, verify_meta, write_h5
from fwi_attn.io.predictions import Predictions, read_predictions, write_predictions
from fwi_attn.io.shard import SCHEMA, describe, read_shard, shard_nbytes, validate_shard, write_shard

__all__ = ["atomic_path", "check_distinct", "check_output", "check_space", "file_sha256", "write_json",
           "ChecksumError", "open_result", "seal", "verify_data", "verify_meta", "write_h5",
           "Predictions", "read_predictions", "write_predictions",
           "SCHEMA", "describe", "read_shard", "shard_nbytes", "validate_shard", "write_shard"]
