"""Searching: queries and their terms, filters, near-duplicates and contact sheets."""
