"""The replication baseline's single-CNN model folder, installed as package data."""
