"""The sandbox's social page: a citizen's form post becomes a comment on the page, and errors can be scripted."""

from __future__ import annotations

import httpx

from suara_devstack.sandbox.app import create_app


async def test_the_page_form_posts_a_comment_and_scripts_answer_the_next_call() -> None:
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
            form = {"action": "facebook_comment", "name": "Siti", "text": "Jembatan rusak"}
            posted = await client.post("/_sandbox/social/form", data=form)
            assert posted.status_code == 303
            page = await client.get("/social")
            assert "Jembatan rusak" in page.text and "Siti" in page.text
            script = {"api": "x_mentions", "errors": [{"status": 429, "reset_in": 60}]}
            assert (await client.post("/_sandbox/social/script", json=script)).json()["pending"] == 1
            limited = await client.get("/2/users/1700000000000000000/mentions")
            assert limited.status_code == 429 and limited.headers["x-rate-limit-reset"].isdigit()
            assert (await client.get("/2/users/1700000000000000000/mentions")).status_code == 200
