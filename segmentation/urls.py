from django.urls import path

from segmentation import views

urlpatterns = [
    path("", views.job_list, name="job_list"),
    path("new/", views.job_new, name="job_new"),
    path("profiles/", views.profile_list, name="profile_list"),
    path("<int:pk>/", views.job_detail, name="job_detail"),
    path("<int:pk>/output/", views.job_output, name="job_output"),
    path("<int:pk>/manifest/", views.job_manifest, name="job_manifest"),
]
