import pytest

from aya_assets.profile import ProfileError, load_profile


def test_shipped_profiles_are_valid():
    tiny = load_profile("tiny")
    assert tiny.name == "tiny" and len(tiny.clusters) == 4
    assert load_profile("gpu").name == "gpu"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"unknown_key": 1}, r"unknown_key: Extra inputs are not permitted"),
        ({"seed": "abc"}, r"seed: Input should be a valid integer"),
        ({"prompts": {"sources": [{"kind": "seed", "path": "does/not/exist"}]}}, r"prompts\.sources\.0\.seed\.path: .*does not exist"),
        ({"prompts": {"sources": []}}, r"prompts\.sources: List should have at least 1 item"),
        ({"clusters": {"a": [], "b": ["en"]}}, r"clusters: .*a: cluster has no languages"),
        ({"clusters": {"a": ["en", "fr"]}}, r"clusters: .*languages in no cluster"),
        (
            {"prompts": {"sources": [{"kind": "arena_hard", "path": "pyproject.toml", "language": "xx"}]}},
            r"language: .*unknown language 'xx'",
        ),
        (
            {"prompts": {"sources": [{"kind": "seed"}, {"kind": "seed"}]}},
            r"source names must be unique, repeated: seed",
        ),
    ],
)
def test_bad_profile_errors_name_the_key(write_profile, overrides, message):
    path = write_profile(**overrides)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert path in str(info.value)


def test_missing_profile_file():
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile("no_such_profile")
