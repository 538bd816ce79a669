"""The shipped model folders (weights and cards), installed as package data: see corelab.segment.folder."""
