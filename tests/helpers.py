"""Text the tests share: what the random checkpoints' tokenizers are trained on (conftest.py builds those)."""

TEXTS = [
    "hello world, how are you today? bonjour le monde, comment allez-vous? hola mundo, ¿cómo estás?",
    "hallo welt, wie geht es dir? ciao mondo, come stai? olá mundo, como vai? привет мир, как дела?",
    "γειά σου κόσμε, τι κάνεις; مرحبا بالعالم، كيف حالك؟ नमस्ते दुनिया, आप कैसे हैं? こんにちは世界、元気ですか？",
] * 4
OTHER_TEXTS = ["the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs."] * 8
NAN_TENSOR = "model.layers.1.self_attn.v_proj.weight"  # the tensor conftest's `nan` checkpoint poisons


def materialize_upstream(home, profile: dict, targets: list[str], runs: int = 1, after_each=None) -> list:
    """Write `profile` under `home` and materialize every asset upstream of `targets` (AYA_HOME=home, a fresh instance
    there) `runs` times; `after_each()` is called after each run. Returns each run's results."""
    import dagster as dg
    import pytest
    import yaml

    from aya_assets.cli.runner import materialize_all
    from aya_assets.definitions import build_definitions

    path = home / f"{profile['name']}.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    (home / "dagster").mkdir(exist_ok=True)
    out = []
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("AYA_HOME", str(home))
        defs = build_definitions(str(path))
        selection = list(dg.AssetSelection.assets(*targets).upstream().resolve(defs.resolve_asset_graph()))
        for _ in range(runs):
            out.append(materialize_all(defs, instance, selection))
            if after_each:
                after_each()
    return out
