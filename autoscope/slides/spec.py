"""The typed ingestion spec: what `slides ingest` reads (`conf/slides/*.yaml`, every default there).

The `slides` stage builds it from the config; `autoscope.slides.ingest.Ingest` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlidesSpec:
    """Where WSIs come from and what to do when a file lacks information.

    Attributes:
        sources: Folders (searched recursively), globs or slide files.
        extensions: File suffixes a folder source contributes.
        metadata: Optional CSV with a `path` or `slide` column; other columns join the registry.
        mpp: Fallback MPP (um/px) for slides whose file and metadata have none.
        thumbnail_px: Longest side of the stored thumbnail.
        mask_mpp: Resolution of the stored low-resolution tissue mask.
        hash_bytes: The content hash reads the first and last N bytes plus the size.
        checkpoint_slides: The registry is saved after this many slides...
        checkpoint_s: ...or this many seconds since the last save, whichever comes first.
    """

    sources: tuple[str, ...]
    extensions: tuple[str, ...]
    metadata: str | None
    mpp: float | None
    thumbnail_px: int
    mask_mpp: float
    hash_bytes: int
    checkpoint_slides: int
    checkpoint_s: float
