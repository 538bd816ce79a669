"""The single-CNN baseline model folder, installed as package data."""
