from rest_framework.routers import DynamicRoute, SimpleRouter

from segmentation.api import views


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

urlpatterns = router.urls
