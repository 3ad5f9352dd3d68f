"""Job pages: downloads of a finished job's output and manifest (members of its organization)."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404

from segmentation.jobfiles import job_dir
from segmentation.models import JobStatus
from segmentation.selectors import job_of


def _finished_job(request, pk):
    job = job_of(request.organization, pk) if request.organization else None
    if job is None or job.status != JobStatus.SUCCEEDED:
        raise Http404("No finished job of yours has this number.")
    return job


@login_required
def job_output(request, pk):
    job = _finished_job(request, pk)
    path = job_dir(job.pk) / f"output.{job.input_format}"
    stem = job.input_name.rsplit(".", 1)[0] if "." in job.input_name else job.input_name
    return FileResponse(
        open(path, "rb"),
        as_attachment=True,
        filename=f"{stem}-segmented.{job.input_format}",
        content_type="application/vnd.tcpdump.pcap",
    )


@login_required
def job_manifest(request, pk):
    job = _finished_job(request, pk)
    return FileResponse(
        open(job_dir(job.pk) / "manifest.json", "rb"),
        as_attachment=True,
        filename=f"job-{job.pk}-manifest.json",
        content_type="application/json",
    )
