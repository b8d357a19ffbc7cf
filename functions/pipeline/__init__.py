"""Shared code of the cutover pipeline's Lambda functions."""
