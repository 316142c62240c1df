"""binderless: temporary Jupyter environments from Git repositories, on AWS Lambda."""

__version__ = "0.1.0"
