"""tamperscope: an open observatory of network interference."""

__version__ = "0.1.0"
SOFTWARE_NAME = "tamperscope"
