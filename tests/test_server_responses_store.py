"""Responses that remember (issue 31 point 5), with a fake engine (no model, seconds): `store`,
`previous_response_id` (the earlier turns reach the engine, streamed too), GET, DELETE and
input_items through the official openai client, the bounds by age (a moved clock, no sleep) and
count, the API key owning its responses, storing off, and a chain continued across a restart."""

import pytest

from server_harness import FakeEngine, request, running_server
from ovchat.server.response_store import ResponseStore, owner_of

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

DAY_S = 86400
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client_of(url: str, key: str = "unused"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine()
    with running_server(lambda: engine) as (url, app):
        yield client_of(url), url, engine, app.state.ovchat.store


def chat_of(prompt) -> list[tuple[str, str]]:
    """(role, text) of the messages the engine was given."""
    return [(m["role"], m["content"] if isinstance(m["content"], str) else "\n".join(p["text"] for p in m["content"]))
            for m in prompt]


# ---- the store itself --------------------------------------------------------------------------

def test_the_store_keeps_by_owner_and_forgets_by_age_and_count(tmp_path):
    now = [1000.0]
    store = ResponseStore(tmp_path / "r.sqlite", max_count=3, max_age_s=10, clock=lambda: now[0])
    items = [{"type": "message", "id": "msg_1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    store.put("alice", {"id": "resp_1", "output": [{"type": "message", "id": "msg_2"}]}, items)
    found = store.get("resp_1", "alice")
    assert found.input_items == items and [i["id"] for i in found.context()] == ["msg_1", "msg_2"]
    assert store.get("resp_1", "bob") is None and not store.delete("resp_1", "bob")
    now[0] += 10.5  # past max_age_s: gone at once for readers, and from the file at the next write
    assert store.get("resp_1", "alice") is None
    for i in range(2, 7):
        now[0] += 1
        store.put("alice", {"id": f"resp_{i}", "output": []}, [])
    assert store.count() == 3 and [store.get(f"resp_{i}", "alice") is not None for i in range(2, 7)] == [
        False, False, True, True, True]
    assert store.delete("resp_6", "alice") and store.get("resp_6", "alice") is None
    store.close()
    reopened = ResponseStore(tmp_path / "r.sqlite", max_count=3, max_age_s=10, clock=lambda: now[0])
    assert reopened.get("resp_5", "alice").response == {"id": "resp_5", "output": []}
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_owners_are_hashes_of_keys_never_the_keys():
    assert owner_of(None) == "" and owner_of("sk-a") != owner_of("sk-b")
    assert "sk-a" not in owner_of("sk-a") and len(owner_of("sk-a")) == 64


# ---- through the server ------------------------------------------------------------------------

def test_previous_response_id_gives_the_engine_the_earlier_turns_without_their_instructions(served):
    client, _, engine, _ = served
    first = client.responses.create(model="fake-model", input="My name is Ada.", instructions="Be brief.")
    assert first.store is True and first.previous_response_id is None  # stored by default, as OpenAI
    second = client.responses.create(model="fake-model", input="What is my name?", previous_response_id=first.id)
    assert chat_of(engine.seen_prompts[-1]) == [("user", "My name is Ada."), ("assistant", "Hello, world."),
                                                ("user", "What is my name?")]  # no "Be brief.": not carried over
    assert second.previous_response_id == first.id and second.usage.input_tokens > first.usage.input_tokens
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant"),
                                                      ("message", "user")]
    assert items.data[1].id == first.output[0].id and items.data[2].content[0].text == "What is my name?"
    assert items.data[0].content[0].type == "input_text" and items.data[1].content[0].type == "output_text"


def test_a_streamed_turn_continues_a_chain_and_is_stored_too(served):
    client, _, engine, _ = served
    first = client.responses.create(model="fake-model", input="One.")
    with client.responses.stream(model="fake-model", input="Two.", previous_response_id=first.id) as stream:
        final = stream.get_final_response()
    assert chat_of(engine.seen_prompts[-1]) == [("user", "One."), ("assistant", "Hello, world."), ("user", "Two.")]
    third = client.responses.create(model="fake-model", input="Three.", previous_response_id=final.id)
    assert [text for _, text in chat_of(engine.seen_prompts[-1])] == ["One.", "Hello, world.", "Two.",
                                                                      "Hello, world.", "Three."]
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text and stored.usage.output_tokens == final.usage.output_tokens
    assert stored.previous_response_id == first.id and third.previous_response_id == final.id


def test_a_tool_loop_sends_only_the_call_output_after_a_stored_call(served):
    client, _, engine, _ = served
    called = client.responses.create(model="fake-model", input="Weather in Paris?", tools=[WEATHER])
    call = called.output[0]
    client.responses.create(model="fake-model", tools=[WEATHER], tool_choice="none", previous_response_id=called.id,
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}])
    prompt = engine.seen_prompts[-1]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool"]
    assert prompt[1]["tool_calls"][0]["id"] == call.call_id and prompt[2]["tool_call_id"] == call.call_id


def test_retrieve_delete_and_unknown_ids(served):
    client, url, _, _ = served
    made = client.responses.create(model="fake-model", input="hi", metadata={"k": "v"})
    got = client.responses.retrieve(made.id)
    assert (got.id, got.output_text, got.model, got.created_at, got.metadata) == (
        made.id, made.output_text, made.model, made.created_at, {"k": "v"})
    status, body, _ = request(url, "DELETE", f"/v1/responses/{made.id}")
    assert status == 200 and body == {"id": made.id, "object": "response", "deleted": True}
    for call in (lambda: client.responses.retrieve(made.id), lambda: client.responses.delete(made.id),
                 lambda: client.responses.input_items.list(made.id),
                 lambda: client.responses.create(model="fake-model", input="x", previous_response_id=made.id)):
        with pytest.raises(openai.NotFoundError) as gone:
            call()
        assert made.id in gone.value.message and gone.value.body["code"] == "response_not_found"
    assert gone.value.body["param"] == "previous_response_id"


def test_store_false_keeps_nothing(served):
    client, _, _, store = served
    before = store.count()
    unkept = client.responses.create(model="fake-model", input="hi", store=False)
    with client.responses.stream(model="fake-model", input="hi", store=False) as stream:
        streamed = stream.get_final_response()
    assert unkept.store is False and streamed.store is False and store.count() == before
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="fake-model", input="more", previous_response_id=unkept.id)


def test_input_items_pages_as_openai_lists(served):
    client, url, _, _ = served
    response = client.responses.create(model="fake-model", input=[{"role": "user", "content": f"q{i}"}
                                                                  for i in range(5)])
    newest = client.responses.input_items.list(response.id, limit=2)  # desc by default, as OpenAI
    assert [i.content[0].text for i in newest.data] == ["q4", "q3"] and newest.has_more
    assert (newest.first_id, newest.last_id) == (newest.data[0].id, newest.data[1].id)
    status, page, _ = request(url, "GET", f"/v1/responses/{response.id}/input_items?order=asc&limit=3&after="
                              f"{newest.last_id}")
    assert status == 200 and [i["content"][0]["text"] for i in page["data"]] == ["q4"] and not page["has_more"]
    everything = [i.content[0].text for i in client.responses.input_items.list(response.id, order="asc")]
    assert everything == [f"q{i}" for i in range(5)]  # the client's auto-paging: all of them


@pytest.mark.parametrize("path, param", [
    ("/input_items?limit=0", "limit"), ("/input_items?limit=101", "limit"), ("/input_items?order=sideways", "order"),
    ("/input_items?after=msg_nope", "after"), ("/input_items?include=x", "include"), ("?stream=true", "stream")])
def test_bad_queries_are_400s_naming_the_field(served, path, param):
    client, url, _, _ = served
    made = client.responses.create(model="fake-model", input="hi")
    status, body, _ = request(url, "GET", f"/v1/responses/{made.id}{path}")
    assert status == 400 and body["error"]["param"] == param


@pytest.mark.parametrize("body, param", [
    ({"input": "hi", "store": 1}, "store"), ({"input": "hi", "previous_response_id": ""}, "previous_response_id"),
    ({"input": "hi", "previous_response_id": ["resp_1"]}, "previous_response_id"),
    ({"input": "hi", "conversation": {"id": "conv_1"}}, "conversation")])
def test_bad_fields_are_400s_naming_them(served, body, param):
    _, url, _, _ = served
    status, answer, _ = request(url, "POST", "/v1/responses", body)
    assert status == 400 and answer["error"]["param"] == param


def test_a_response_past_its_age_is_a_404(served):
    client, _, _, store = served
    made = client.responses.create(model="fake-model", input="hi")
    clock = store.clock
    store.clock = lambda: clock() + 30 * DAY_S + 1  # a month on: no sleep, the store's clock moved
    try:
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model="fake-model", input="more", previous_response_id=made.id)
    finally:
        store.clock = clock


def test_the_oldest_beyond_the_count_are_pruned():
    with running_server(lambda: FakeEngine(), responses_max_count=3) as (url, _):
        client = client_of(url)
        made = [client.responses.create(model="fake-model", input=f"q{i}").id for i in range(5)]
        kept = []
        for response_id in made:
            status = request(url, "GET", f"/v1/responses/{response_id}")[0]
            kept.append(status == 200)
    assert kept == [False, False, True, True, True]


def test_another_key_and_a_restart(tmp_path):
    """A chain continued across a restart on the same file; another key (or none) sees nothing."""
    db = str(tmp_path / "responses.sqlite")
    with running_server(lambda: FakeEngine(), api_key="key-a", responses_db=db) as (url, _):
        first = client_of(url, "key-a").responses.create(model="fake-model", input="Remember: 42.")
    engine = FakeEngine()
    with running_server(lambda: engine, api_key="key-a", responses_db=db) as (url, _):  # a new server, same file
        again = client_of(url, "key-a").responses.create(model="fake-model", input="What was it?",
                                                        previous_response_id=first.id)
        assert chat_of(engine.seen_prompts[-1])[0] == ("user", "Remember: 42.") and again.status == "completed"
    with running_server(lambda: FakeEngine(), api_key="key-b", responses_db=db) as (url, _):
        with pytest.raises(openai.NotFoundError) as other:
            client_of(url, "key-b").responses.retrieve(first.id)
        assert first.id in other.value.message
        status, _, _ = request(url, "DELETE", f"/v1/responses/{again.id}", headers={"Authorization": "Bearer key-b"})
        assert status == 404
    with running_server(lambda: FakeEngine(), responses_db=db) as (url, _):  # no key: not key-a's responses
        assert request(url, "GET", f"/v1/responses/{first.id}")[0] == 404
    with running_server(lambda: FakeEngine(), api_key="key-a", responses_db=db) as (url, _):
        assert client_of(url, "key-a").responses.retrieve(again.id).previous_response_id == first.id


def test_storing_off_stores_nothing_and_says_so(tmp_path):
    with running_server(lambda: FakeEngine(), store_responses=False) as (url, app):
        client = client_of(url)
        assert app.state.ovchat.store is None
        assert client.responses.create(model="fake-model", input="hi").store is False  # absent: not stored
        for field, value in (("store", True), ("previous_response_id", "resp_1")):
            with pytest.raises(openai.BadRequestError) as refused:
                client.responses.create(model="fake-model", input="hi", **{field: value})
            assert refused.value.body["param"] == field and "--no-store" in refused.value.message
        assert request(url, "GET", "/v1/responses/resp_1")[0] == 404


def test_an_unwritable_store_is_an_error_at_start_naming_the_setting(tmp_path):
    from ovchat.engine.errors import OptionsError
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OptionsError) as caught:
        ResponseStore(blocker / "responses.sqlite")
    assert caught.value.param == "responses_db" and "--no-store" in str(caught.value)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is no database" * 100)
    with pytest.raises(OptionsError):
        ResponseStore(junk)



def test_a_store_that_fails_costs_its_answer_a_500_not_the_server():
    with running_server(lambda: FakeEngine()) as (url, app):
        client = client_of(url)
        app.state.ovchat.store._db.close()  # as a disk gone bad would: every read and write fails
        with pytest.raises(openai.InternalServerError) as failed:
            client.responses.create(model="fake-model", input="hi")
        assert "could not be stored" in failed.value.message
        status, streamed, _ = request(url, "POST", "/v1/responses", {"input": "hi", "stream": True})
        assert status == 200 and "event: error" in streamed and "could not be stored" in streamed
        assert "response.completed" not in streamed
        assert client.responses.create(model="fake-model", input="hi", store=False).output_text == "Hello, world."
