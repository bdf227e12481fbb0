"""Ground floor: the tables and files that travel between stages, as types and schemas."""
