from rest_framework.routers import SimpleRouter

from billing.api import views
from segmentation.api.urls import ActionRouter

router = SimpleRouter()
router.register("ratings", views.RatingViewSet, basename="rating")
# Downloads name a file and end without a slash, like jobs' (`statements/{number}/pdf`).
documents = ActionRouter()
documents.register("statements", views.StatementViewSet, basename="statement")
documents.register("settlements", views.SettlementViewSet, basename="settlement")
documents.register("cards", views.CardViewSet, basename="card")

urlpatterns = router.urls + documents.urls
