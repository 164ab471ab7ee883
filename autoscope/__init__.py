"""AutoSCOPE: a declarative assembly line for computational-pathology AI."""

__version__ = "0.1.0"
