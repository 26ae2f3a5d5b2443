"""The scoring of studies/penalties.py (no model): what counts as valid JSON holding a word, a
call naming the city, a right answer."""

from studies.penalties import calls_name, json_holds, right


def test_json_must_be_one_object_and_hold_the_word():
    assert json_holds('{"name": "Paris", "country": "France"}', "Paris") == (True, True)
    assert json_holds('{"name": "", "country": {"capital": "Paris"}}', "Paris") == (True, True)  # anywhere inside
    assert json_holds('{"name": "", "country": "France"}', "Paris") == (True, False)
    assert json_holds('{"name": "Paris", "country": {"type": "json", "data": {', "Paris") == (False, False)  # cut off
    assert json_holds('["Paris"]', "Paris") == (False, False)  # not an object


def test_every_call_must_name_the_city():
    paris = {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert calls_name([paris, paris], "city", "Paris")
    assert not calls_name([paris, {"name": "get_weather", "arguments": {"city": ""}}], "city", "Paris")
    assert not calls_name([], "city", "Paris")
    assert not calls_name([{"name": "get_weather", "arguments": "{city: Paris"}], "city", "Paris")  # unparsed


def test_an_answer_is_right_when_it_holds_its_word_in_any_case():
    assert right(["The capital is Paris.", "It is tokyo.", "I do not know."], ["Paris", "Tokyo", "Berlin"]) == 2
