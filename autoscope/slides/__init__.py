"""Slides: WSI backends, the tile reader, tissue detection, samplers, thumbnails, registry."""
