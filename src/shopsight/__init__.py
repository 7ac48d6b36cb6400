"""shopsight."""
