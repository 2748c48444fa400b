"""Upload handler that streams files to disk and stops a request past the size limit."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


def upload_too_large(request) -> bool:
    """True when ``LimitedTemporaryFileUploadHandler`` cut this request's upload short."""
    return bool(getattr(request, "upload_too_large", False))


def too_large_message() -> str:
    limit_mib = settings.INFEROPT_UPLOAD_MAX_BYTES / 1024**2
    return f"the upload is larger than the limit of {limit_mib:.0f} MiB (INFEROPT_UPLOAD_MAX_BYTES)"


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Always write uploads to a temporary file (never memory) and enforce the byte limit.

    A ``Content-Length`` above the limit refuses the first file before reading it;
    otherwise bytes are counted chunk by chunk. Form fields sent before the file
    (the CSRF token, the name) are still parsed, so the view can answer with a
    message; it checks ``upload_too_large(request)``.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = settings.INFEROPT_UPLOAD_MAX_BYTES
        self.received = 0
        self.declared_too_large = bool(content_length) and content_length > self.limit + 1024**2
        return None

    def new_file(self, *args, **kwargs):
        if self.declared_too_large:
            self._refuse()
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self._refuse()
        return super().receive_data_chunk(raw_data, start)

    def _refuse(self):
        if self.request is not None:
            self.request.upload_too_large = True
        # connection_reset: do not read (and discard) the rest of a huge body.
        raise StopUpload(connection_reset=True)
