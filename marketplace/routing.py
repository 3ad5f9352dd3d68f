"""Websocket routes of every app; each live feature has one consumer."""

from django.urls import path

from auctions.consumers import AuctionConsumer
from marketplace.consumers import PresenceConsumer
from segmentation.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/presence/", PresenceConsumer.as_asgi()),
    path("ws/auctions/<int:auction_id>/", AuctionConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
]
