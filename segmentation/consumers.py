"""The job page's websocket: the job's progress on connect, then every change as it happens
(the services publish after their transaction commits; see segmentation.live)."""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from marketplace.live import server_loop_register
from marketplace.selectors import memberships_of
from segmentation.live import EVENT_HANDLER, job_group_name
from segmentation.models import Job
from segmentation.selectors import job_progress

# Close code for anyone who may not watch the job: anonymous, not a member of the job's
# organization, or no such job (the same answer, so a job's existence is not revealed).
# Sent after accepting, so the browser sees it and stops reconnecting.
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _progress_for_member(job_id: int, user) -> dict | None:
    """The job's progress if `user` belongs to the job's organization, else None."""
    if user is None or not user.is_authenticated:
        return None
    organizations = memberships_of(user=user).values("organization_id")
    job = Job.objects.filter(pk=job_id, organization_id__in=organizations).first()
    return job_progress(job) if job is not None else None


class JobConsumer(AsyncJsonWebsocketConsumer):
    """One job's live progress at /ws/jobs/<id>/: `{"type": "progress", "progress": {…}}`
    messages, each the job's whole progress with its `seq` (one not newer than the last sent
    is dropped)."""

    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        self.group_name = job_group_name(self.job_id)
        self.last_seq = -1
        # Workers in this process (the embedded one) publish through this loop.
        server_loop_register(asyncio.get_running_loop())
        # Join before reading the snapshot, so no change falls between the two: an event the
        # snapshot already holds is not newer, and is dropped.
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        progress = await _progress_for_member(self.job_id, self.scope.get("user"))
        await self.accept()
        if progress is None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)
            self.group_name = None
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._progress_send(progress)

    async def disconnect(self, code):
        if getattr(self, "group_name", None):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def dispatch(self, message):
        # Relaying needs no database: skip Channels' hop through the database thread.
        if message["type"] == EVENT_HANDLER:
            await self.job_progress(message)
            return
        await super().dispatch(message)

    async def job_progress(self, message):
        await self._progress_send(message["progress"])

    async def _progress_send(self, progress: dict):
        seq = progress.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq:
            return
        self.last_seq = seq
        await self.send_json({"type": "progress", "progress": progress})

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        await self.send_json(
            {"type": "error", "code": "read_only", "detail": "This feed takes no messages."}
        )
