"""Schema-guided decoding keeps a whole reply inside its token cap: string lengths follow max_tokens."""

from atlas.agents.protocol import RUN_SQL, SUBMIT
from atlas.llm.structured import MAX_STRING_CHARS, bounded, chars_for, string_fields


def _reply_schema():
    options = [{"type": "object", "properties": {"name": {"const": k.spec.name}, "arguments": k.spec.parameters}} for k in (RUN_SQL, SUBMIT)]
    return {"anyOf": options}


def test_string_lengths_leave_room_for_the_json_at_one_token_per_character():
    schema = _reply_schema()
    fields = string_fields(schema)
    assert fields == 2  # thought + sql, or thought + answer: the longest branch counts
    for max_tokens in (64, 96, 512):
        per_field = chars_for(schema, max_tokens)
        assert per_field * fields + 40 <= max(max_tokens, 56) and per_field <= MAX_STRING_CHARS
    limited = bounded(RUN_SQL.spec.parameters, chars_for(schema, 96))
    assert limited["properties"]["sql"]["maxLength"] == limited["properties"]["thought"]["maxLength"] == 28
