"""The persisted files of a study, one module per file: its schema string, reader and writer,
free of torch (the figures, the report and study loading read them without loading a network)."""
