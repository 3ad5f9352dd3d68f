from rest_framework.routers import SimpleRouter

from auctions.api import views

router = SimpleRouter()
router.register("auctions", views.AuctionViewSet, basename="auction")
router.register("blocks", views.ServiceBlockViewSet, basename="block")

urlpatterns = router.urls
