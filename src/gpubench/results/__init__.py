"""Result tables: the versioned schema, atomic writing, reading (with migration),
summaries. Never imports a framework."""
