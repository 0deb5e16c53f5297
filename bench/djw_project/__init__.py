"""A minimal Django project for the django-webhook baseline.

It runs in its own virtual environment (var/bench/djw-venv, built by ``make bench-djw``
from requirements.txt here) because django-webhook brings its own
Django app, signals and Celery task and must not share a process with Hookpost.
It uses the benchmark's database (its tables are ``django_webhook_*``; the
``auth``/``contenttypes`` migrations are the same Django's) and Redis DB, with
its own Celery queue ``bench.djw``.
"""
