from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace import views
from providers.console import console_site

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("accounts/signup/", views.sign_up, name="signup"),
    path("accounts/login/", views.RateLimitedLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("organizations/new/", views.organization_new, name="organization_new"),
    path("organizations/switch/", views.organization_switch, name="organization_switch"),
    path("organizations/<slug:slug>/", views.organization_detail, name="organization_detail"),
    path(
        "organizations/<slug:slug>/invitations/<int:pk>/revoke/",
        views.invitation_revoke_view,
        name="invitation_revoke",
    ),
    path(
        "organizations/<slug:slug>/api-keys/<int:pk>/revoke/",
        views.api_key_revoke_view,
        name="api_key_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept_view, name="invitation_accept"),
    path("providers/", include("providers.urls")),
    path("auctions/", include("auctions.urls")),
    path("", include("auctions.group_urls")),
    path("jobs/", include("segmentation.urls")),
    path("requests/", include("segmentation.request_urls")),
    path("ratings/", include("billing.urls")),
    path("billing/", include("billing.payment_urls")),
    path("console/", console_site.urls),
    path("admin/login/", views.RateLimitedAdminLoginView.as_view(), name="admin_login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("marketplace.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "marketplace.errors.bad_request"
handler404 = "marketplace.errors.not_found"
handler500 = "marketplace.errors.server_error"
