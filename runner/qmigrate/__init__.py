"""qmigrate: declarative, resumable migrations of vector data into Qdrant."""

__version__ = "0.1.0"
