from rest_framework.routers import SimpleRouter

from providers.api import views

router = SimpleRouter()
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("networks", views.NetworkViewSet, basename="network")
router.register("routing-paths", views.RoutingPathViewSet, basename="routing-path")
router.register("offers", views.OfferViewSet, basename="offer")

urlpatterns = router.urls
