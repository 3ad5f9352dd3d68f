"""Auction pages (being built)."""

from django.shortcuts import get_object_or_404, render

from auctions.selectors import auctions_public


def auction_list(request):
    return render(request, "auctions/list.html", {"auctions": auctions_public()})


def auction_detail(request, pk):
    auction = get_object_or_404(auctions_public(), pk=pk)
    return render(request, "auctions/detail.html", {"auction": auction})
