from django.urls import path

from billing import views

urlpatterns = [
    path("", views.rating_list, name="rating_list"),
    path("leases/<int:lease_id>/rate/", views.rating_new, name="rating_new_lease"),
    path("jobs/<int:job_id>/rate/", views.rating_new, name="rating_new_job"),
    path(
        "jobs/<int:job_id>/providers/<int:provider_id>/rate/",
        views.rating_new,
        name="rating_new_job_provider",
    ),
    path("<int:pk>/reply/", views.rating_reply_view, name="rating_reply"),
]
