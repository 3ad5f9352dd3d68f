from django.urls import path

from auctions import views

urlpatterns = [
    path("", views.auction_list, name="auction_list"),
    path("<int:pk>/", views.auction_detail, name="auction_detail"),
    path("<int:pk>/buy-now/", views.auction_buy_now_view, name="auction_buy_now"),
]
