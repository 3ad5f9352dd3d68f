from django.urls import path

from billing import views

urlpatterns = [
    path("statements/", views.statement_list, name="statement_list"),
    path("statements/<str:number>/", views.statement_detail, name="statement_detail"),
    path("statements/<str:number>/pdf/", views.statement_pdf_view, name="statement_pdf"),
    path("cards/", views.card_list, name="card_list"),
    path("charges/<int:pk>/authenticate/", views.charge_authenticate, name="charge_authenticate"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
