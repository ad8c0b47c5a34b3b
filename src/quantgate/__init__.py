"""quantgate."""
