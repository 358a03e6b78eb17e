from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    verbose_name = "genreweb benchmarks and demo data"
