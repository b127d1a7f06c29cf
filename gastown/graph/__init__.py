"""The bead DAG: building it, checking it, selecting from it, and drawing it."""
