import pytest

from aya_assets.profile import ProfileError, load_profile


def test_shipped_profiles_are_valid():
    tiny = load_profile("tiny")
    assert tiny.name == "tiny" and len(tiny.clusters) == 4
    assert load_profile("gpu").name == "gpu"


# Each bad profile and the message that must name its key; tests/test_cli.py runs them through `aya` too.
BAD_PROFILES = [
    ({"unknown_key": 1}, r"unknown_key: Extra inputs are not permitted"),
    ({"seed": "abc"}, r"seed: Input should be a valid integer"),
    ({"prompts": {"sources": [{"kind": "seed", "path": "does/not/exist"}]}}, r"prompts\.sources\.0\.seed\.path: .*does not exist"),
    ({"prompts": {"sources": []}}, r"prompts\.sources: List should have at least 1 item"),
    ({"clusters": {"slavic_greek": []}}, r"clusters: .*slavic_greek: cluster has no languages"),
    ({"clusters": {"romance_germanic": ["en", "fr"]}}, r"clusters: .*languages in no cluster: nl, de, it, pt, ro"),
    ({"models": {"teachers": [{"name": "t1", "focus": ["atlantis"]}], "translation_source": None}}, r"unknown language 'atlantis'"),
    ({"models": {"build": False}}, r"models: .*`path` is required when models.build is false"),
    ({"models": {"build": False, "teachers": [{"name": "t", "path": "/no/such/ckpt"}],
                 "student": {"name": "s", "path": "org/student"}, "reward_model": {"name": "r", "path": "org/rm"},
                 "translation_source": None}}, r"path does not exist: /no/such/ckpt"),
    ({"arbitrage": {"routing": "single:nobody"}}, r"unknown teacher 'nobody'"),
    ({"arbitrage": {"routing": "best"}}, r"arbitrage.routing: String should match pattern"),
    ({"generation": {"backend": "endpoint"}}, r"needs an `endpoint:` section"),
    ({"models": {"architecture": {"hidden_size": "big"}}}, r"models.architecture.hidden_size"),
    ({"models": {"architecture": {"depth": 3}}}, r"models.architecture.depth"),
    (
        {"prompts": {"sources": [{"kind": "arena_hard", "path": "pyproject.toml", "language": "xx"}]}},
        r"language: .*unknown language 'xx'",
    ),
    (
        {"prompts": {"sources": [{"kind": "seed"}, {"kind": "seed"}]}},
        r"source names must be unique, repeated: seed",
    ),
]


@pytest.mark.parametrize("overrides, message", BAD_PROFILES)
def test_bad_profile_errors_name_the_key(write_profile, overrides, message):
    path = write_profile(**overrides)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert path in str(info.value)


def test_missing_profile_file():
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile("no_such_profile")
