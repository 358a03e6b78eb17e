from django.db import connection
from django.http import JsonResponse
from django.views.defaults import page_not_found


def healthz(request):
    """Liveness + database check for load balancers and compose health checks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request, exception=None):
    """404 for URLs no route matches: JSON under /api/ (what API clients and the schema
    expect, e.g. /api/movies/1.5/), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
