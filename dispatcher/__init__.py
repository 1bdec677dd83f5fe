"""Cluster Week dispatcher: scheduled newsletter and social posts."""

__version__ = "0.1.0"
