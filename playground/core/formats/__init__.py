"""Model files read as they are: a GGUF's header, metadata and blocks, loaded
without a float copy; the scanner that lists a machine's model files."""
