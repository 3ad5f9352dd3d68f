from rest_framework.routers import DynamicRoute, SimpleRouter

from segmentation.api import planning, views


class ActionRouter(SimpleRouter):
    """Collections and objects end with a slash like the rest of the API (`jobs/`, `jobs/7/`);
    their actions name a file or an operation and do not (`jobs/7/output`, `work/claim`)."""

    routes = [
        route._replace(url=route.url.replace("{trailing_slash}", ""))
        if isinstance(route, DynamicRoute)
        else route
        for route in SimpleRouter.routes
    ]


router = ActionRouter()
router.register("jobs", views.JobViewSet, basename="job")
router.register(
    "segmentation-profiles", views.SegmentationProfileViewSet, basename="segmentation-profile"
)
router.register("work", views.WorkViewSet, basename="work")
# Service requests' actions are collections and objects of their own (the availability
# messages, the plan): they end with a slash, `service-requests/7/availability/`.
requests_router = SimpleRouter()
requests_router.register("devices", planning.ClientDeviceViewSet, basename="client-device")
requests_router.register(
    "service-requests", planning.ServiceRequestViewSet, basename="service-request"
)

urlpatterns = router.urls + requests_router.urls
