"""JSON/YAML schemas shipped with nsbi."""
