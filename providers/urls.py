from django.urls import path

from providers import views

urlpatterns = [
    path("", views.provider_list, name="provider_list"),
    path("apply/", views.provider_apply, name="provider_apply"),
    path("<slug:slug>/", views.provider_detail, name="provider_detail"),
]
