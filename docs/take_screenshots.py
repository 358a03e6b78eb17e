"""Screenshots of the main pages for the README (docs/screenshots/*.png).

Run against a dev server filled with synthetic data, e.g.:

    GENREWEB_DATA_DIR=/tmp/demo python manage.py migrate
    GENREWEB_DATA_DIR=/tmp/demo python manage.py seed_synthetic --movies 3000 --posters 12 --predictions --audit
    GENREWEB_DATA_DIR=/tmp/demo GENREWEB_PORT=8765 ./scripts/run-platform   # gunicorn + a worker; admin user
    GENREWEB_DATA_DIR=/tmp/demo python manage.py embed_catalog --encoders text   # similar movies
    (a retrain job, a bulk change set and a webhook endpoint: README "Screenshots")
    python docs/take_screenshots.py --base http://127.0.0.1:8765 --user admin --password ... --version 2

The synthetic audit (--audit) plants label issues, so the review queues have items; a real
audit_labels run finds none on synthetic overviews.

Needs Debian chromium (or GENREWEB_CHROMIUM) and the playwright Python package.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PAGES = [
    ("login", "/accounts/login/", False),
    ("catalog-grid", "/", False),
    ("catalog-list", "/?view=list&genre=animation", False),
    ("movie", "/movies/{movie}/", True),
    ("movie-list-unsure", "/?view=list&audit=uncertain", False),
    ("review-queue", "/models/review/errors/", True),
    ("review-item", "/models/review/errors/1/", True),
    ("review-progress", "/models/review/progress/", True),
    ("change-sets", "/changes/", False),
    ("webhooks", "/webhooks/", False),
    ("models", "/models/", True),
    ("model-report", "/models/{version}/", True),
    ("insight", "/insight/", True),
    ("compare", "/models/compare/?a={other}&b={version}", True),
    ("jobs", "/jobs/", False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8765")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--movie", type=int, default=1)
    parser.add_argument("--version", type=int, default=1, help="model version for the report (promoted first)")
    parser.add_argument("--other", type=int, default=1, help="version to compare it with")
    args = parser.parse_args()
    chromium = os.environ.get("GENREWEB_CHROMIUM") or shutil.which("chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(args.base + "/accounts/login/")
        page.screenshot(path=OUT / "login.png")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        # Preprocess the posters through the Jobs page first (a real worker must be running):
        # the job page's live progress is a screenshot of its own.
        page.goto(args.base + "/jobs/")
        page.click("#queue summary")
        page.select_option("select[name=kind]", "preprocess")
        page.screenshot(path=OUT / "queue-job.png")
        page.click("#queue-form button[type=submit]")
        page.wait_for_function(
            "document.getElementById('job-status').textContent.trim() === 'Succeeded'", timeout=300_000
        )
        page.wait_for_selector("form[action$='/cancel/']", state="detached")  # the finished page reloaded
        page.screenshot(path=OUT / "job.png", full_page=True)
        page.goto(f"{args.base}/models/{args.version}/")
        if page.locator("#promote").count():
            page.once("dialog", lambda dialog: dialog.accept())  # "Promote ... to production?"
            page.click("#promote")
            page.wait_for_selector(".msg.success")
        for name, path, full in PAGES[1:]:
            page.goto(args.base + path.format(movie=args.movie, version=args.version, other=args.other))
            page.wait_for_load_state("networkidle")
            for image in page.locator("img").all():  # lazy images load only when scrolled to
                image.scroll_into_view_if_needed()
            page.wait_for_load_state("networkidle")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=OUT / f"{name}.png", full_page=full)
            print("saved", OUT / f"{name}.png")
        # Predict: an overview and a generated poster, answered by the production model.
        poster = OUT.parent / "predict-poster.tmp.jpg"
        Image.new("RGB", (200, 300), (120, 20, 30)).save(poster, "JPEG")
        page.goto(args.base + "/models/predict/")
        page.fill(
            "textarea[name=overview]",
            "A haunted house, a demon in the cellar and a nightmare that "
            "will not end: the family must escape before midnight.",
        )
        page.set_input_files("input[name=poster]", str(poster))
        page.click(".predict-form button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=OUT / "predict.png")
        poster.unlink()
        browser.close()


if __name__ == "__main__":
    main()
