"""The interactive API docs name only this host's files (drf-spectacular-sidecar),
and forbid images from elsewhere. The browser side is
tests/browser/test_production_stack.py."""

from __future__ import annotations

import re

import pytest
from django.test import Client


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_page_loads_nothing_from_another_host(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in page
    assert re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", page) == []
    assert response["Content-Security-Policy"] == "img-src 'self' data:"
