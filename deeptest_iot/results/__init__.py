"""A run folder: the writer, the reader, and what is made from it (report, JUnit, compare, export)."""
