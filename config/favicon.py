"""GET /favicon.ico: browsers ask for it at the site root whatever the page's <link rel="icon"> says."""

from django.conf import settings
from django.http import FileResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


@require_GET
@cache_control(public=True, max_age=7 * 24 * 3600)
def favicon(request):
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
