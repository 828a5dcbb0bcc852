"""Loaders turn a version folder into a servable, one per platform."""
