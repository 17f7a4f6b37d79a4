"""Learned, equivariant interaction models (torch)."""
