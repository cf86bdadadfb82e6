"""The exports in other people's formats: what they render as HTML is escaped, and the
JSON-LD ids come from the configured public URL (pure functions)."""

from __future__ import annotations

from dateline.domain.state import Entry
from dateline.query.exports import jsonld, timelinejs
from dateline.query.views import StoryView

MARKUP = '<img src=x onerror="alert(1)">'


def story() -> StoryView:
    return StoryView(id="s1", title=f"Title {MARKUP}", summary=f"Summary {MARKUP}")


def test_timelinejs_escapes_every_text_it_renders_as_html() -> None:
    entry = Entry(
        version=1,
        id="u1",
        type="dateline.statement.made",
        time="2019-02-28T13:25:00+07:00",
        precision="exact",
        summary=f"Kim: {MARKUP}",
        source="urn:feed:<b>x</b>",
    )
    doc = timelinejs(story(), [entry])
    text = str(doc)
    assert "<img" not in text and "<b>" not in text
    assert (
        doc["title"]["text"]["headline"] == "Title &lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    )
    assert doc["events"][0]["text"]["headline"].startswith("Kim: &lt;img")


def test_jsonld_ids_are_under_the_public_url_or_relative() -> None:
    assert jsonld(story(), "https://news.example/dateline")["@id"] == (
        "https://news.example/dateline/v1/stories/s1"
    )
    assert jsonld(story(), "")["@id"] == "/v1/stories/s1"
