import pytest

import funnelkit as fk
from funnelkit.stages import PRESETS, StageSet, get_stage_set, normalize_label


def test_presets_cover_the_domain_models():
    assert PRESETS["pipeline4"].stages == ("qualification", "meeting", "proposal", "close")
    assert PRESETS["pipeline4"].outcomes == ("won", "lost")
    six = PRESETS["pipeline6"].stages
    assert six[0] == "prospecting" and "relationship" in six and len(six) == 6
    assert PRESETS["aida"].stages == ("awareness", "interest", "desire", "action")
    assert PRESETS["marketing5"].stages == ("awareness", "consideration", "conversion", "loyalty", "advocacy")
    assert PRESETS["sales_funnel6"].stages == ("awareness", "interest", "desire", "evaluation", "sale", "retention")
    assert PRESETS["tofu_mofu_bofu"].canonical("MOFU") == "middle"


def test_steps_and_order():
    s = PRESETS["pipeline4"]
    assert s.steps == ("qualification", "meeting", "proposal", "close", "won")
    assert s.order("Proposal") == 2
    assert s.order("won") == 4
    assert s.order("Closed Lost") == -1  # CRM label via alias
    with pytest.raises(fk.StageSetError, match="not a stage"):
        s.order("nonsense")


def test_normalize_label():
    assert normalize_label(" Closed-Won ") == "closed won"
    assert normalize_label("closed__won") == "closed won"


def test_yaml_round_trip(tmp_path):
    s = StageSet("ent", ["lead", "demo", "offer"], won="signed", lost=["lost", "disqualified"],
                 aliases={"Demo scheduled": "demo"}, horizon_days=120)
    path = tmp_path / "ent.yaml"
    s.to_yaml(path)
    back = StageSet.from_yaml(path)
    assert back == s
    assert back.canonical("demo scheduled") == "demo"
    assert get_stage_set(str(path)) == s


@pytest.mark.parametrize(
    "text, match",
    [
        ("stages: []\n", "empty"),
        ("name: x\n", "'stages'"),
        ("stages: [a, b, a]\n", "appears twice"),
        ("stages: [a, b]\ncolour: red\n", "unknown key"),
        ("stages: [a, b]\naliases: {x: zz}\n", "not a stage"),
        ("stages: a\n", "list of names"),
        ("stages: [a, b\n", "not valid YAML"),
    ],
)
def test_yaml_validation_errors(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(fk.StageSetError, match=match):
        StageSet.from_yaml(path)


def test_unknown_preset_suggests():
    with pytest.raises(fk.StageSetError, match="pipeline4"):
        get_stage_set("pipeline5")


def test_get_stage_set_from_list_and_mapping():
    assert get_stage_set(["a", "b"]).steps == ("a", "b")
    assert get_stage_set({"stages": ["a", "b"], "won": "w"}).steps == ("a", "b", "w")


def test_suggest_close_matches():
    assert "proposal" in PRESETS["pipeline4"].suggest("proposl")
