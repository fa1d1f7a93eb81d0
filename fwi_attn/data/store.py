"""Where the file formats and file safety used to live, before :mod:`fwi_attn.io` (one module per
persisted file) took them over: the same names, imported from their new homes.

Low-level safety: :mod:`fwi_attn.io.hdf5` (checksums, checked opening) and :mod:`fwi_attn.io.files`
(atomic writes, free space, distinct inputs). Formats: :mod:`fwi_attn.io.shard` and
:mod:`fwi_attn.io.predictions`.
"""
from __future__ import annotations

from fwi_attn.io.files import (SPACE_MARGIN, OutputError, atomic_path, check_distinct, check_output, check_space,
                               file_sha256, free_bytes, remove_orphans, write_json)
from fwi_attn.io.hdf5 import (DATA_HASH, META_HASH, ChecksumError, ShardError, data_digest, h5_attrs, meta_digest,
                              open_result, seal, verify_data, verify_meta, write_h5)
from fwi_attn.io.predictions import PREDICTIONS_SCHEMA, Predictions, read_predictions, write_predictions
from fwi_attn.io.shard import (REQUIRED_ATTRS, SCHEMA, DatasetError, Shard, check_shard, describe, package_versions,
                               read_shard, shard_nbytes, validate_shard, write_shard)

__all__ = ["SPACE_MARGIN", "OutputError", "atomic_path", "check_distinct", "check_output", "check_space",
           "file_sha256", "free_bytes", "remove_orphans", "write_json",
           "DATA_HASH", "META_HASH", "ChecksumError", "ShardError", "data_digest", "h5_attrs", "meta_digest",
           "open_result", "seal", "verify_data", "verify_meta", "write_h5",
           "PREDICTIONS_SCHEMA", "Predictions", "read_predictions", "write_predictions",
           "REQUIRED_ATTRS", "SCHEMA", "DatasetError", "Shard", "check_shard", "describe", "package_versions",
           "read_shard", "shard_nbytes", "validate_shard", "write_shard"]
