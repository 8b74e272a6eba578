"""Data: where the offline datasets live (``MOTE_DATA``) and how training examples are organised."""

from mote.data.location import DATA_ENV, data_dir

__all__ = ["DATA_ENV", "data_dir"]
