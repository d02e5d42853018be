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


async def test_the_page_sends_a_messenger_photo_whose_cdn_link_serves_it_until_it_expires() -> None:
    """Playing the citizen, one sends a photo on Messenger from the page: the sandbox holds it on its CDN, the
    timeline marks it, and its signed link serves it until the link expires (403, as Meta's CDN answers)."""
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256))
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
            page = (await client.get("/social")).text
            assert 'enctype="multipart/form-data"' in page and 'type="file" name="photo"' in page
            form = {"action": "facebook_message", "name": "Rudi", "text": ""}
            posted = await client.post(
                "/_sandbox/social/form", data=form, files={"photo": ("lampu.jpg", photo, "image/jpeg")}
            )
            assert posted.status_code == 303
            assert "📷 image" in (await client.get("/social")).text
            (file,) = app.state.social.files.values()
            _, link = app.state.social.file_link(file, "http://sandbox.test")
            served = await client.get(link)
            assert (served.status_code, served.content, served.headers["content-type"]) == (200, photo, "image/jpeg")
            assert (await client.get(link.replace("oh=", "oh=0"))).status_code == 403  # a forged signature
            assert (await client.delete(f"/_sandbox/social/media/{file.id}")).json()["downloads"] == 1
            expired = await client.get(link)
            assert (expired.status_code, expired.text) == (403, "URL signature expired")
            empty = await client.post("/_sandbox/social/form", data=form)
            assert empty.status_code == 422  # neither text nor a photo
