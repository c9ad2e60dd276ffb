"""qsflow's Prefect blocks. ``prefect block register -m blocks`` registers them."""

from blocks.storage import QsflowStore

__all__ = ["QsflowStore"]
