"""`extract`: main text of HTML pages with trafilatura, in a crash-proof sandbox child process."""

from operators.extract.operator import Extract, ExtractParams, decode_html  # noqa: F401
