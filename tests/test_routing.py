import pytest

from mote.routing import DEFAULT_TASKS, RoutingTable, UnknownTaskError


def test_default_table_has_four_tasks_one_expert_each():
    t = RoutingTable.default()
    assert t.task_names == ["query", "document", "classification", "clustering"]
    assert [t.expert(n) for n in t.task_names] == [0, 1, 2, 3]
    assert t.prompts() == DEFAULT_TASKS
    assert t.default_task == "document"


def test_resolution_order_task_then_prompt_then_default():
    t = RoutingTable.default()
    assert t.resolve("query", None) == ("query", "search_query: ")
    assert t.resolve("query", "custom: ") == ("query", "custom: ")  # explicit task wins, explicit prompt is prepended
    assert t.resolve(None, "clustering: ") == ("clustering", "clustering: ")
    assert t.resolve(None, None) == ("document", "search_document: ")


def test_unknown_task_error_lists_tasks_and_prefixes():
    t = RoutingTable.default()
    with pytest.raises(UnknownTaskError) as e:
        t.route("retrieval")
    msg = str(e.value)
    for name, prefix in DEFAULT_TASKS.items():
        assert repr(name) in msg and repr(prefix) in msg


def test_unknown_prompt_is_an_error_not_a_silent_default():
    with pytest.raises(UnknownTaskError, match="task="):
        RoutingTable.default().resolve(None, "Represent this: ")


def test_many_to_one_sharing_from_spec():
    t = RoutingTable.from_spec("query@0,document@0,classification,clustering")
    assert t.num_experts == 3
    assert t.tasks_of_expert(0) == ["query", "document"]
    assert t.expert("classification") == 1 and t.expert("clustering") == 2


def test_custom_prefixes_and_round_trip():
    t = RoutingTable.from_spec("query=q: ,document=d: ")
    assert t.prefix("query") == "q: " and t.default_task == "document"
    assert RoutingTable.from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    "prefixes,experts,match",
    [
        ({"a": "x", "b": "x"}, None, "share a prefix"),
        ({"a": "x", "b": "y"}, {"a": 0, "b": 2}, "0..E-1"),
        ({"a": "x"}, {"a": 0, "b": 1}, "unknown"),
    ],
)
def test_invalid_tables_are_rejected(prefixes, experts, match):
    with pytest.raises(ValueError, match=match):
        RoutingTable.from_prefixes(prefixes, experts)


def test_spec_without_prefix_for_unknown_task():
    with pytest.raises(UnknownTaskError, match="no default prefix"):
        RoutingTable.from_spec("summarization")
