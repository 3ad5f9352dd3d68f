from django.urls import include, path, re_path

from marketplace.api.problems import api_not_found

urlpatterns = [
    path("", include("providers.api.urls")),
    path("", include("auctions.api.urls")),
    path("", include("segmentation.api.urls")),
    path("", include("billing.api.urls")),
    # Last: a path no route matches (`/api/v1/nothing/`, `/api/v1/jobs/x.y/`) is a 404 problem,
    # not the site's HTML page.
    re_path(r"^", api_not_found),
]
