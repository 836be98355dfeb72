"""The memory browser at /ui, driven in a real Chromium by Playwright against a real mnemo serve.

Needs Debian's ``chromium`` (``apt-get install chromium``; .ci/run installs it) and the test
extras' ``playwright``; Playwright's own browser download is never used. Screenshots go to
the test run's temporary folder, or to ``MNEMO_UI_SCREENSHOTS`` when it names a folder.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import mnemo_command, server_env, start_server, stop_server
from .tokens import ALL_USER_SCOPES, rs256, rsa_keys

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
if CHROMIUM is None:
    pytest.skip("no chromium on this machine: install it (apt-get install chromium) to run the browser tests",
                allow_module_level=True)
NOT_INSTALLED = "the test extras are not installed: pip install -e '.[test]'"
sync_api = pytest.importorskip("playwright.sync_api", reason=NOT_INSTALLED)
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright", reason=NOT_INSTALLED)
expect = sync_api.expect

KEY = "the-ui-test-security-key"
TIMEOUT_MS = 5000
REFUSED_LOAD = "Failed to load resource: the server responded with a status of"


def serve_ui(folder: Path, **settings: str):
    """A ``mnemo serve`` over a SQLite file in ``folder``; yields its base URL, then checks its log."""
    env = server_env(MNEMO_DATABASE_URL=f"sqlite:///{folder}/memories.db", MNEMO_SECURITY_KEY=KEY,
                     MNEMO_JWT_VERIFICATION_KEY=rsa_keys().public_pem, MNEMO_VALIDATE_RESPONSES="true",
                     **settings)
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", "--workers", "1"], env,
                                 cwd=folder)
    yield base
    stop_server(process)
    log = process.stdout.read().decode()
    # The key and tokens travel in a header only: no log line may ever hold them.
    assert KEY not in log
    assert "eyJ" not in log


ARCHIVE = "archive_memories"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server most tests share: search by meaning with the default, bundled model, and a
    second memory table beside the default one, for the page to offer."""
    folder = tmp_path_factory.mktemp("ui-server")
    config = folder / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "mnemo"\nurl = "sqlite:///{folder}/memories.db"\n'
                      f'tables = ["mnemo_memories", "{ARCHIVE}"]\n')
    yield from serve_ui(folder, MNEMO_CONFIG=str(config))


@pytest.fixture(scope="module")
def server_without_embeddings(tmp_path_factory):
    yield from serve_ui(tmp_path_factory.mktemp("ui-server-no-embeddings"), MNEMO_EMBEDDINGS="none")


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    chosen = os.environ.get("MNEMO_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Problems:
    """What the page's console reported: a CSP violation or a script error fails the test."""

    def __init__(self, page):
        self.messages = []
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.messages.append(str(error)))
        page.on("dialog", self.dialog)

    def console(self, message) -> None:
        # Chromium reports every answer of 400 or more, and the tests make the API refuse on purpose.
        if message.type == "error" and not message.text.startswith(REFUSED_LOAD):
            self.messages.append(message.text)

    def dialog(self, dialog) -> None:
        self.messages.append(f"dialog: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def open_page(browser, server):
    contexts = []

    def open_(width=1280, height=860, color_scheme="light", base=None):
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.problems = Problems(page)
        page.goto((base or server) + "/ui")
        return page

    yield open_
    for context in contexts:
        for page in context.pages:
            assert page.problems.messages == []
        context.close()


def sign_in(page, token=KEY):
    page.get_by_label("Security key or JWT").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Memories")).to_be_visible()


def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def create(api, memory, user, topics=()):
    response = api.post("/memories", json={"memory": memory, "user_id": user, "topics": list(topics)})
    assert response.status_code == 200, response.text
    return response.json()


def filter_by_user(page, user):
    if not page.locator("details.filter-box").evaluate("box => box.open"):
        page.get_by_text("Filter and search").click()
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_role("button", name="Apply").click()


def rows(page):
    return page.locator("table.memories tbody tr")


def test_signing_in_keeps_the_key_in_the_tab_only(open_page, server):
    page = open_page()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Security key or JWT").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Not signed in")
    sign_in(page)
    assert page.evaluate("sessionStorage.getItem('mnemo.token')") == KEY
    assert page.context.cookies() == []
    assert KEY not in page.url
    assert page.evaluate("localStorage.getItem('mnemo.token')") is None
    # A reload in the same tab stays signed in; a new tab (a new session) does not.
    page.reload()
    expect(page.get_by_role("heading", name="Memories")).to_be_visible()
    other = page.context.browser.new_page()
    other.goto(server + "/ui/")
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
    other.close()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('mnemo.token')") is None


def test_the_table_pages_and_sorts(open_page, api, screenshots):
    user = user_id()
    for number in range(12):
        create(api, f"fact number {number:02d}", user, topics=["numbers"])
    page = open_page()
    sign_in(page)
    filter_by_user(page, user)
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.memories caption")).to_have_text("12 memories, page 1 of 2")
    expect(rows(page)).to_have_count(10)
    expect(rows(page).first.locator("td.text")).to_have_text("fact number 11")
    page.screenshot(path=screenshots / "ui-memories.png")
    page.get_by_role("button", name="Next page").click()
    expect(rows(page)).to_have_count(2)
    expect(page.locator("table.memories caption")).to_have_text("12 memories, page 2 of 2")
    page.get_by_role("button", name="Created: sort newest first").click()
    expect(page.locator("table.memories caption")).to_have_text("12 memories, page 1 of 2")
    expect(page.locator("th[aria-sort]")).to_contain_text("Created")
    page.get_by_role("button", name="Created: sort oldest first").click()
    expect(rows(page).first.locator("td.text")).to_have_text("fact number 00")
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")


def test_create_search_edit_delete_and_history(open_page):
    user = user_id()
    page = open_page()
    sign_in(page)
    page.get_by_role("button", name="New memory").click()
    page.get_by_label("Memory", exact=True).fill("Prefers green tea in the morning")
    page.locator("#c-user").fill(user)
    page.get_by_label("Topics (comma-separated)").fill("drinks, mornings")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Memory created.")

    page.get_by_label("Search", exact=True).fill("GREEN TEA")
    filter_by_user(page, user)
    expect(rows(page)).to_have_count(1)
    row = rows(page).first
    expect(row.locator("td.text")).to_have_text("Prefers green tea in the morning")
    expect(row.locator(".topics li")).to_have_text(["drinks", "mornings"])

    row.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("form", name="Edit memory")
    editor.get_by_label("Memory").fill("Prefers black coffee in the morning")
    editor.get_by_label("Topics (comma-separated)").fill("drinks")
    editor.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Memory saved.")
    # The search still says green tea: the edited memory no longer matches it.
    expect(rows(page).first).to_have_text("No memories match.")
    page.get_by_label("Search", exact=True).fill("coffee")
    page.get_by_role("button", name="Apply").click()
    expect(rows(page).first.locator("td.text")).to_have_text("Prefers black coffee in the morning")

    rows(page).first.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete this memory?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Memory deleted.")
    expect(rows(page).first).to_have_text("No memories match.")

    page.get_by_role("link", name="See its history").click()
    expect(page.get_by_role("heading", name="History of a memory")).to_be_visible()
    versions = page.locator("ol.timeline > li")
    expect(versions).to_have_count(3)
    expect(versions.locator("h2")).to_have_text(
        ["Version 1: Created", "Version 2: Updated", "Version 3: Deleted"])
    expect(versions.nth(0)).to_contain_text("Prefers green tea in the morning")
    expect(versions.nth(1)).to_contain_text("Prefers black coffee in the morning")
    expect(versions.nth(2)).to_contain_text(f"user {user}")


def test_a_conflicting_edit_shows_both_versions_and_overwrites_nothing(open_page, api, screenshots):
    user = user_id()
    memory = create(api, "Lives in Lyon", user)
    page = open_page()
    sign_in(page)
    filter_by_user(page, user)
    rows(page).first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("form", name="Edit memory")
    editor.get_by_label("Memory").fill("Lives in Paris")
    # Someone else changes it while the page's editor is open.
    changed = api.patch(f"/memories/{memory['memory_id']}",
                        json={"memory": "Lives in Marseille", "user_id": user})
    assert changed.status_code == 200
    editor.get_by_role("button", name="Save").click()
    conflict = page.locator(".conflict")
    expect(conflict.get_by_role("alert")).to_have_text(
        "Someone else changed this memory after you opened it. Nothing was overwritten.")
    expect(conflict.locator(".version h3")).to_have_text(["Yours (not saved)", "Saved now"])
    expect(conflict.locator(".version .text")).to_have_text(["Lives in Paris", "Lives in Marseille"])
    page.screenshot(path=screenshots / "ui-conflict.png")
    assert api.get(f"/memories/{memory['memory_id']}").json()["memory"] == "Lives in Marseille"
    conflict.get_by_role("button", name="Save mine over it").click()
    expect(page.get_by_role("status")).to_have_text("Memory saved.")
    expect(rows(page).first.locator("td.text")).to_have_text("Lives in Paris")
    assert api.get(f"/memories/{memory['memory_id']}").json()["memory"] == "Lives in Paris"


def test_deleting_a_selection_asks_first(open_page, api):
    user = user_id()
    for text in ("one", "two", "three"):
        create(api, text, user)
    page = open_page()
    sign_in(page)
    filter_by_user(page, user)
    page.get_by_role("checkbox", name="Select memory: one").check()
    page.get_by_role("checkbox", name="Select memory: three").check()
    page.get_by_role("button", name="Delete selected (2)").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(rows(page)).to_have_count(3)
    page.get_by_role("button", name="Delete selected (2)").click()
    expect(page.get_by_role("dialog")).to_contain_text("Delete 2 memories?")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("2 memories deleted.")
    expect(rows(page).locator("td.text")).to_have_text(["two"])


def test_a_user_page_shows_stats_and_topics_and_erases_after_typed_confirmation(open_page, api):
    user = user_id()
    create(api, "Has a cat", user, topics=["pets"])
    create(api, "Has a dog", user, topics=["pets", "walks"])
    page = open_page()
    sign_in(page)
    page.goto(page.url.split("#")[0] + f"#/users/{user}")
    expect(page.get_by_role("heading", name=f"User {user}")).to_be_visible()
    expect(page.locator(".stats dd").first).to_have_text("2")
    topics = page.locator("table.topics-table tbody tr")
    expect(topics.locator("th")).to_have_text(["pets", "walks"])
    expect(topics.locator("td.count")).to_have_text(["2", "1"])
    erase = page.get_by_role("button", name="Erase this user")
    expect(erase).to_be_disabled()
    page.get_by_label(f"Type the user id ({user}) to confirm").fill(user[:-1])
    expect(erase).to_be_disabled()
    page.get_by_label(f"Type the user id ({user}) to confirm").fill(user)
    erase.click()
    expect(page.get_by_role("status")).to_have_text(f"Erased {user}: 2 memories deleted, with their history.")
    expect(page.locator(".stats dd").first).to_have_text("0")
    assert api.get("/memories", params={"user_id": user}).json()["meta"]["total_count"] == 0


def test_topics_show_how_many_memories_carry_each(open_page, api):
    user = user_id()
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    create(api, "first", user, topics=[topic])
    create(api, "second", user, topics=[topic])
    page = open_page()
    sign_in(page)
    page.get_by_role("link", name="Topics").click()
    row = page.locator("table.topics-table tbody tr").filter(has=page.get_by_role("rowheader", name=topic))
    expect(row.locator("td.count")).to_have_text("2")
    row.get_by_role("button", name=f"Show memories with topic {topic}").click()
    expect(rows(page)).to_have_count(2)
    expect(page.get_by_label("Topics (all of, comma-separated)")).to_have_value(topic)


def test_a_users_token_sees_only_that_users_memories(open_page, api):
    alice, bob = user_id(), user_id()
    create(api, "Alice's secret", alice)
    bobs = create(api, "Bob's secret", bob)
    page = open_page()
    sign_in(page, rs256(alice, ALL_USER_SCOPES))
    # Asking for Bob's memories still lists Alice's own: the API decides, not the page.
    filter_by_user(page, bob)
    expect(rows(page).locator("td.text")).to_have_text(["Alice's secret"])
    page.goto(page.url.split("#")[0] + f"#/history/{bobs['memory_id']}")
    expect(page.get_by_role("alert")).to_have_text(f"Memory with ID {bobs['memory_id']} not found")
    page.goto(page.url.split("#")[0] + f"#/users/{bob}")
    expect(page.locator(".stats")).to_contain_text("Not visible to this token")
    page.get_by_label(f"Type the user id ({bob}) to confirm").fill(bob)
    page.get_by_role("button", name="Erase this user").click()
    expect(page.get_by_role("alert")).to_have_text("A token may erase only its own user's memories")
    assert api.get("/memories", params={"user_id": bob}).json()["meta"]["total_count"] == 1


def test_memory_text_is_shown_as_text_never_as_markup(open_page, api):
    user = user_id()
    attack = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    create(api, attack, user, topics=["<b>bold</b>"])
    page = open_page()
    sign_in(page)
    filter_by_user(page, user)
    cell = rows(page).first.locator("td.text")
    expect(cell).to_have_text(attack)
    assert page.locator("table.memories img, table.memories script, table.memories b").count() == 0
    expect(rows(page).first.locator(".topics li")).to_have_text("<b>bold</b>")
    # Problems (the fixture) fails the test if an alert dialog opened.


QUESTION = "can I suggest a salmon dish?"
ANSWER = "Ben is vegetarian and avoids fish as well"
# None of these shares a word with QUESTION or speaks of food, so both rankings put ANSWER first.
OTHERS = ("Ben lives in Lyon", "Ben plays the cello on Sundays", "Ben works nights as a nurse",
          "Ben's sister is called Ana", "Ben prefers trains to planes", "Ben collects old maps",
          "Ben is learning Portuguese", "Ben runs every Tuesday", "Ben's birthday is in March",
          "Ben drives a blue van", "Ben reads crime novels")


def search_by(page, mode, question=None, limit=None):
    if question is not None:
        page.get_by_label("Search", exact=True).fill(question)
    page.get_by_label("Search by").select_option(mode)
    if limit is not None:
        page.get_by_label("Per page").select_option(limit)
    page.get_by_role("button", name="Apply").click()


def test_a_search_by_meaning_shows_the_answer_first_with_its_score_and_pages_the_ranking(
        open_page, api, screenshots):
    user = user_id()
    for text in (*OTHERS, ANSWER):
        create(api, text, user, topics=["ben"])
    page = open_page()
    sign_in(page)
    sent = []
    page.on("request", lambda request: "/memories?" in request.url and sent.append(request.url))
    filter_by_user(page, user)
    expect(rows(page)).to_have_count(12)
    assert "search_mode" not in sent[-1]

    def ranking(mode, page_number=1):
        answer = api.get("/memories", params={"user_id": user, "search_mode": mode,
                                              "search_content": QUESTION, "limit": 10, "page": page_number})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    for mode in ("semantic", "hybrid"):
        search_by(page, mode, QUESTION, limit="10")
        expect(page.locator("table.memories caption")).to_have_text("12 memories ranked, page 1 of 2")
        expect(rows(page).first.locator("td.text")).to_have_text(ANSWER)
        expect(page.locator("table.memories thead th.score")).to_have_text("Score")
        # The API's scores, best first, to three decimals.
        scores = [f"{memory['score']:.3f}" for memory in ranking(mode)]
        expect(rows(page).locator("td.score")).to_have_text(scores)
        assert f"search_mode={mode}" in sent[-1] and "sort_by" not in sent[-1]
        # Dates cannot reorder a ranking: the sort buttons say so rather than doing nothing.
        for name in ("Updated: sort", "Created: sort"):
            sort = page.get_by_role("button", name=name)
            expect(sort).to_be_disabled()
            expect(sort).to_have_accessible_description(re.compile("Sorting by date does not apply"))
        expect(page.locator("#rank-hint")).to_be_visible()
    page.screenshot(path=screenshots / "ui-ranked.png")

    # Page 2 continues the same ranking: the two memories page 1 left out.
    first_page = rows(page).locator("td.text").all_inner_texts()
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("table.memories caption")).to_have_text("12 memories ranked, page 2 of 2")
    second_page = [memory["memory"] for memory in ranking("hybrid", 2)]
    expect(rows(page).locator("td.text")).to_have_text(second_page)
    assert sorted(first_page + second_page) == sorted((*OTHERS, ANSWER))
    assert "page=2" in sent[-1] and "search_mode=hybrid" in sent[-1]

    # Back to substring: a filter again, sortable, without scores.
    search_by(page, "substring", "Ben is")
    expect(page.locator("table.memories caption")).to_have_text("2 memories, page 1 of 1")
    expect(page.locator("table.memories thead")).not_to_contain_text("Score")
    expect(page.locator("#rank-hint")).to_have_count(0)
    expect(page.get_by_role("button", name="Created: sort newest first")).to_be_enabled()
    assert "search_mode" not in sent[-1]

    # A ranked mode needs a question: the API says so and the page shows it.
    refusal = api.get("/memories", params={"search_mode": "semantic"}).json()
    assert refusal["error_code"] == "SEARCH_QUESTION_REQUIRED"
    search_by(page, "semantic", "")
    expect(page.get_by_role("alert")).to_have_text(refusal["detail"])


def test_with_embeddings_off_a_search_by_meaning_shows_the_apis_refusal(open_page, server_without_embeddings):
    with httpx.Client(base_url=server_without_embeddings,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        refusal = client.get("/memories", params={"search_mode": "hybrid", "search_content": QUESTION})
        created = client.post("/memories", json={"memory": ANSWER, "user_id": "ben"})
    assert refusal.status_code == 400 and refusal.json()["error_code"] == "EMBEDDINGS_OFF"
    assert created.status_code == 200
    page = open_page(base=server_without_embeddings)
    sign_in(page)
    for mode in ("semantic", "hybrid"):
        asked = f"search_mode={mode}"
        with page.expect_response(lambda response, asked=asked: asked in response.url) as answer:
            search_by(page, mode, QUESTION)
        assert answer.value.status == 400
        expect(page.get_by_role("alert")).to_have_text(refusal.json()["detail"])
        expect(page.locator("table.memories")).to_have_count(0)
    # Substring search still works on that server.
    search_by(page, "substring", "fish")
    expect(rows(page).locator("td.text")).to_have_text([ANSWER])
    expect(page.get_by_role("alert")).to_be_empty()


def test_the_database_and_table_are_chosen_from_the_servers_list(open_page, api):
    user = user_id()
    create(api, "Kept in the default table", user)
    archived = api.post("/memories", params={"db_id": "mnemo", "table": ARCHIVE},
                        json={"memory": "Kept in the archive", "user_id": user})
    assert archived.status_code == 200, archived.text
    page = open_page()
    sign_in(page)
    database, table = page.get_by_label("Database", exact=True), page.get_by_label("Table", exact=True)
    expect(database.locator("option")).to_have_text(["mnemo"])
    expect(database).to_have_value("mnemo")
    expect(table.locator("option")).to_have_text(["mnemo_memories", ARCHIVE])
    expect(table).to_have_value("mnemo_memories")
    filter_by_user(page, user)
    expect(rows(page).locator("td.text")).to_have_text(["Kept in the default table"])
    # By keyboard: the list keeps the focus while the memories below follow the choice.
    table.focus()
    with page.expect_request(lambda asked: f"table={ARCHIVE}" in asked.url and "db_id=mnemo" in asked.url):
        page.keyboard.press("ArrowDown")
    expect(rows(page).locator("td.text")).to_have_text(["Kept in the archive"])
    expect(table).to_be_focused()
    # The choice holds for the tab's other requests and a reload; the default pair is sent unnamed.
    page.reload()
    expect(page.get_by_label("Table", exact=True)).to_have_value(ARCHIVE)
    filter_by_user(page, user)
    expect(rows(page).locator("td.text")).to_have_text(["Kept in the archive"])
    with page.expect_request(lambda request: "/memories?" in request.url and "table=" not in request.url):
        page.get_by_label("Table", exact=True).select_option("mnemo_memories")
    expect(rows(page).locator("td.text")).to_have_text(["Kept in the default table"])


def test_a_refused_list_of_databases_shows_the_apis_detail_and_keeps_the_default(open_page):
    refusal = {"detail": "Insufficient scope: memories:read is required", "error_code": "FORBIDDEN"}
    page = open_page()
    page.route("**/databases", lambda route: route.fulfill(status=403, json=refusal))
    sign_in(page)
    expect(page.locator("#where-note")).to_contain_text(refusal["detail"])
    expect(page.get_by_label("Database", exact=True)).to_be_hidden()
    expect(rows(page).first).to_be_visible()
    expect(page.get_by_role("alert")).to_be_empty()


def focused_name(page) -> str:
    return page.evaluate("""() => {
        const element = document.activeElement;
        const label = element.getAttribute('aria-label') || element.labels?.[0]?.textContent;
        return (label || element.textContent || '').trim();
    }""")


def tab_to(page, name: str, limit: int = 60) -> None:
    """Press Tab until the focus is on the control named ``name``; fails if it never gets there."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused_name(page) == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_everything_is_reachable_with_the_keyboard_alone(open_page, screenshots):
    user = user_id()
    page = open_page()
    # The key field has the focus as the page opens.
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Memories")).to_be_focused()
    tab_to(page, "User")
    page.keyboard.type(user)
    page.keyboard.press("Enter")
    expect(rows(page).first).to_have_text("No memories match.")
    tab_to(page, "New memory")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Memory", exact=True)).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    tab_to(page, "Topics (comma-separated)")
    page.keyboard.type("keyboard")
    tab_to(page, "Create")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Memory created.")
    expect(rows(page).locator("td.text")).to_have_text(["Typed without a mouse"])

    tab_to(page, "Edit memory: Typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.get_by_role("form", name="Edit memory").get_by_label("Memory")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Edit memory: Typed without a mouse")).to_be_focused()

    tab_to(page, "Delete memory: Typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog").get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(rows(page)).to_have_count(1)

    tab_to(page, "History of memory: Typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="History of a memory")).to_be_focused()
    page.screenshot(path=screenshots / "ui-history.png")
    # Back through the sections' links: Tab wraps around to the top of the page.
    tab_to(page, "Users", limit=80)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Users")).to_be_focused()


def serious(violations: list) -> list:
    return [(v["id"], v["impact"], [node["target"] for node in v["nodes"]][:3])
            for v in violations if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_the_accessibility_scan_finds_nothing_serious(open_page, api, color_scheme):
    user = user_id()
    memory = create(api, "Speaks French and German", user, topics=["languages"])
    api.patch(f"/memories/{memory['memory_id']}",
              json={"memory": "Speaks French", "user_id": user, "topics": ["languages"]})
    axe = axe_playwright.Axe()
    page = open_page(color_scheme=color_scheme)
    found = {"sign in": serious(axe.run(page).response["violations"])}
    sign_in(page)
    filter_by_user(page, user)
    rows(page).first.get_by_role("button", name="Edit").click()
    found["memories, editing"] = serious(axe.run(page).response["violations"])
    search_by(page, "hybrid", "Which languages does this user know?")
    expect(rows(page).locator("td.score")).to_have_count(1)
    found["memories, ranked"] = serious(axe.run(page).response["violations"])
    page.goto(page.url.split("#")[0] + f"#/history/{memory['memory_id']}")
    expect(page.locator("ol.timeline > li")).to_have_count(2)
    found["history"] = serious(axe.run(page).response["violations"])
    page.goto(page.url.split("#")[0] + f"#/users/{user}")
    expect(page.locator("table.topics-table td.count")).to_have_text(["1"])
    found["user"] = serious(axe.run(page).response["violations"])
    page.get_by_role("link", name="Topics").click()
    expect(page.get_by_role("heading", name="Topics")).to_be_visible()
    found["topics"] = serious(axe.run(page).response["violations"])
    assert found == {name: [] for name in found}


def test_light_and_dark_follow_the_system_and_the_theme_button(open_page, api, screenshots):
    user = user_id()
    create(api, "Prefers dark mode in every app", user, topics=["preferences", "display"])
    create(api, "Works nights", user, topics=["schedule"])
    page = open_page(color_scheme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    sign_in(page)
    filter_by_user(page, user)
    expect(rows(page)).to_have_count(2)
    assert page.evaluate(background) == "rgb(15, 20, 25)"
    page.screenshot(path=screenshots / "ui-dark.png")
    page.get_by_role("button", name="Theme: system").click()
    expect(page.get_by_role("button", name="Theme: light")).to_be_visible()
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.get_by_role("button", name="Theme: light").click()
    assert page.evaluate(background) == "rgb(15, 20, 25)"
    # The choice is the browser's to remember (it is no secret); back to the system's.
    page.get_by_role("button", name="Theme: dark").click()
    expect(page.get_by_role("button", name="Theme: system")).to_be_visible()


def test_a_phone_width_screen_shows_cards_without_sideways_scrolling(open_page, api, screenshots):
    user = user_id()
    create(api, "Commutes by bike, even in the rain, and likes long rides on weekends", user,
           topics=["transport", "hobbies"])
    create(api, "Allergic to peanuts", user, topics=["health"])
    page = open_page(width=390, height=844)
    sign_in(page)
    filter_by_user(page, user)
    expect(rows(page)).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert rows(page).first.evaluate("row => getComputedStyle(row).display") == "block"
    expect(rows(page).first.get_by_role("button", name="Edit")).to_be_in_viewport()
    page.screenshot(path=screenshots / "ui-phone.png", full_page=True)
