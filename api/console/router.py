"""``/console``: the pages and their static files.

A page is a shell (Jinja2, autoescaped) that its script fills from the JSON API with the
user's credential, kept in the tab's ``sessionStorage`` and sent as a bearer token (no
cookie: no ambient credential a cross-site request could ride on). The script writes
every value as text (``textContent``), never as markup, and the Content-Security-Policy
forbids inline and foreign scripts, so text that looks like HTML stays text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.roles import ADMIN, AUDITOR, BILLING

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Page:
    """A console page: its path under /console, its title, and the roles it is for
    (empty: every signed-in user). The roles only choose what the menu shows; the API
    decides what each call may do."""

    name: str
    title: str
    roles: tuple[str, ...] = ()


PAGES = (
    Page("playground", "Playground"),
    Page("operations", "Operations", (ADMIN,)),
    Page("usage", "Usage", (ADMIN, BILLING)),
    Page("audit", "Audit", (ADMIN, AUDITOR)),
    Page("keys", "Keys", (ADMIN,)),
)
_BY_NAME = {page.name: page for page in PAGES}

router = APIRouter(include_in_schema=False)


def _render(
    request: Request, template: str, page: Page | None, *, status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"page": page, "pages": PAGES},
        headers=SECURITY_HEADERS,
        status_code=status_code,
    )


@router.get("/console")
async def console_home() -> RedirectResponse:
    return RedirectResponse("/console/playground", status_code=303)


@router.get("/console/signin")
async def signin(request: Request) -> HTMLResponse:
    return _render(request, "signin.html", None)


@router.get("/console/{name}")
async def console_page(name: str, request: Request) -> HTMLResponse:
    page = _BY_NAME.get(name)
    if page is None:
        return _render(request, "missing.html", None, status_code=404)
    return _render(request, f"{page.name}.html", page)
