"""Buying groups, offers to groups and the seats of a lease (included at the site's root)."""

from django.urls import path

from auctions import group_views as views

urlpatterns = [
    path("groups/", views.group_list, name="group_list"),
    path("groups/invitations/", views.group_invitations, name="group_invitations"),
    path("groups/offers/new/", views.group_offer_new, name="group_offer_new"),
    path(
        "groups/offers/<int:pk>/withdraw/",
        views.group_offer_withdraw_view,
        name="group_offer_withdraw",
    ),
    path("groups/<int:pk>/", views.group_detail, name="group_detail"),
    path(
        "groups/<int:pk>/members/<int:member_pk>/remove/",
        views.group_member_remove,
        name="group_member_remove",
    ),
    path(
        "groups/<int:pk>/members/<int:member_pk>/admin/",
        views.group_member_admin,
        name="group_member_admin",
    ),
    path(
        "groups/<int:pk>/offers/<int:offer_pk>/accept/",
        views.group_offer_accept_view,
        name="group_offer_accept",
    ),
    path("leases/<int:pk>/seats/", views.lease_seats, name="lease_seats"),
    path(
        "leases/<int:pk>/seats/<int:seat_pk>/release/",
        views.lease_seat_release,
        name="lease_seat_release",
    ),
]
