from django.urls import path

from segmentation import views

urlpatterns = [
    path("", views.service_request_list, name="service_request_list"),
    path("new/", views.service_request_new, name="service_request_new"),
    path("devices/", views.client_device_list, name="client_device_list"),
    path("<int:pk>/", views.service_request_detail, name="service_request_detail"),
]
