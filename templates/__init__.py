"""The report's HTML template and stylesheet, installed as package data: see corelab.report.pdf."""
