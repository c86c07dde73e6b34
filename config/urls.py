from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.favicon import favicon
from config.health import healthz
from config.ids import IdConverter

# before the apps' urls are included: they use <id:...> for every object id
register_converter(IdConverter, "id")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # the split view serves Swagger UI's start-up script as a file: the page has no inline script (CSP)
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html"),
        name="api-docs",
    ),
    path("", include("annotation.urls")),
    path("", include("ranking.urls")),
    path("", include("training.urls")),
]

admin.site.site_header = "rlhf-studio administration"
admin.site.site_title = "rlhf-studio"
# a database that cannot be reached, even from inside a middleware, answers 503 rather than 500
handler500 = "config.database_outage.server_error"
