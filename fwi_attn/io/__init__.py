"""The persisted files of a study, one module per file: its schema string, reader and writer,
free of torch (the figures, the report and study loading read them without loading a network).

==================  ==========================================================================
module              file
==================  ==========================================================================
``shard``           ``<split>/shard-NNNN.h5``: velocity models and gathers (``fwi-attn/1``)
``stats``           ``<dataset>/stats.json``: normalisation constants, the mean model
``predictions``     ``predictions.h5``: every prediction of a run on a split
``attention``       ``attention.h5``: a network's attention maps on the showcase sample
``attention_salt``  ``attention_salt.json``: each attention map scored against salt
``gathers``         ``gathers.h5``: the physics check's showcase gathers
``run_json``        ``metrics.json``, ``physics.json``, ``refine.json``
``history``         ``history.csv``: one row per training epoch
``checked_json``    the ``sha256`` every JSON result carries
``hdf5``            the checksums every HDF5 file carries; checked opening
``files``           atomic writes, free space and writable paths, files' identities
==================  ==========================================================================
"""
