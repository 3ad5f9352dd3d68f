from django.urls import path

from segmentation import views

urlpatterns = [
    path("<int:pk>/output/", views.job_output, name="job_output"),
    path("<int:pk>/manifest/", views.job_manifest, name="job_manifest"),
]
