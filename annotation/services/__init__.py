"""Writes for annotation: projects and guidelines, demonstrations and reviews, imports, the SFT export."""
