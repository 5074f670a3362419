"""Five-minute study: budgeted training of tiny language models and the laws that explain them."""

__version__ = "0.1.0"
