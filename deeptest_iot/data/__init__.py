"""Seed data: the procedural driving scenes and loaders for a user's own frames and labels."""
