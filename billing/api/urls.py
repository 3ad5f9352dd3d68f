from rest_framework.routers import SimpleRouter

from billing.api import views

router = SimpleRouter()
router.register("ratings", views.RatingViewSet, basename="rating")

urlpatterns = router.urls
