"""Uploads of captures: refused before their body is read when they announce a size over the
limit. (`job_submit` also stops copying at the limit, for bodies that announce no size.)"""

from django.conf import settings

# room for the multipart envelope and the form's other fields around the file
MULTIPART_SLACK_BYTES = 64 * 1024


def upload_announced_too_large(request) -> int | None:
    """The body size the request announces if it is over JOB_UPLOAD_MAX_BYTES, else None."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > settings.JOB_UPLOAD_MAX_BYTES + MULTIPART_SLACK_BYTES:
        return length
    return None


def uploaded_chunks(upload):
    """The chunks of an UploadedFile, for `job_submit`."""
    return upload.chunks()
