"""The `aya` command: materialize with a readable console, query with SQL, open the UI."""
