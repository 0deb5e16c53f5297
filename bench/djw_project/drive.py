"""Drive the django-webhook baseline from its own virtual environment.

    python -m bench.djw_project.drive setup URL    # migrate, register one webhook for URL
    python -m bench.djw_project.drive send RUN N   # create N Groups (N webhooks); print timings

``send`` prints one JSON line: ``{"start": epoch, "end": epoch, "keys": N}``.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    import django

    from bench.djw_project.celery_app import app  # noqa: F401  (must be current before setup)

    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django_webhook.models import Webhook, WebhookSecret, WebhookTopic, populate_topics_from_settings

    if argv[0] == "setup":
        call_command("migrate", verbosity=0)
        populate_topics_from_settings()  # it ran before the tables existed
        webhook = Webhook.objects.create(url=argv[1])
        webhook.topics.set(WebhookTopic.objects.filter(name="auth.Group/create"))
        WebhookSecret.objects.create(webhook=webhook, token="bench-secret-0123456789")
        print(json.dumps({"webhook": webhook.pk}))
    elif argv[0] == "send":
        run, count = argv[1], int(argv[2])
        start = time.time()
        for index in range(count):
            # One save = one post_save signal = one fire_webhook task: the package's own path.
            Group.objects.create(name=f"djw-{run}-{index}")
        print(json.dumps({"start": start, "end": time.time(), "keys": count}), flush=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
