from django.urls import include, path

urlpatterns = [
    path("", include("providers.api.urls")),
    path("", include("auctions.api.urls")),
    path("", include("segmentation.api.urls")),
    path("", include("billing.api.urls")),
]
