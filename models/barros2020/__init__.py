"""The replication baseline: the paper's method as exactly as corelab runs it (models/train.sh), installed as package data."""
