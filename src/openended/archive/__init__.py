"""Archives of diverse, good genomes (thin wrappers over pyribs)."""

from openended.archive.archive import Archive, ArchiveStats
from openended.archive.elite import Elite

__all__ = ["Archive", "ArchiveStats", "Elite"]
