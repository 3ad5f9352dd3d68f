from rest_framework.routers import SimpleRouter

from auctions.api import groups, leases, views
from segmentation.api.urls import ActionRouter

router = SimpleRouter()
router.register("auctions", views.AuctionViewSet, basename="auction")
router.register("blocks", views.ServiceBlockViewSet, basename="block")
router.register("leases", leases.LeaseViewSet, basename="lease")
# Buying groups and seats: collections and objects end with a slash (`groups/4/members/`),
# operations do not (`group-invitations/12/accept`), like jobs' and work's.
shared = ActionRouter()
shared.register("groups", groups.GroupViewSet, basename="group")
shared.register(
    r"groups/(?P<group_id>[^/.]+)/members", groups.GroupMemberViewSet, basename="group-member"
)
shared.register(
    r"groups/(?P<group_id>[^/.]+)/offers", groups.OfferToGroupViewSet, basename="group-offer-in"
)
shared.register("group-invitations", groups.GroupInvitationViewSet, basename="group-invitation")
shared.register("group-offers", groups.GroupOfferViewSet, basename="group-offer")
shared.register(r"leases/(?P<lease_id>[^/.]+)/seats", groups.LeaseSeatViewSet, basename="seat")

urlpatterns = router.urls + shared.urls
