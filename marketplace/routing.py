"""Websocket routes of every app; each live feature has one consumer."""

from django.urls import path

from marketplace.consumers import PresenceConsumer

websocket_urlpatterns = [
    path("ws/presence/", PresenceConsumer.as_asgi()),
]
