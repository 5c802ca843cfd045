"""Pydantic request/response models, one module per HTTP dialect."""
