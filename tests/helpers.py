"""Text the tests share: what the random checkpoints' tokenizers are trained on (conftest.py builds those)."""

TEXTS = [
    "hello world, how are you today? bonjour le monde, comment allez-vous? hola mundo, ¿cómo estás?",
    "hallo welt, wie geht es dir? ciao mondo, come stai? olá mundo, como vai? привет мир, как дела?",
    "γειά σου κόσμε, τι κάνεις; مرحبا بالعالم، كيف حالك؟ नमस्ते दुनिया, आप कैसे हैं? こんにちは世界、元気ですか？",
] * 4
OTHER_TEXTS = ["the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs."] * 8
NAN_TENSOR = "model.layers.1.self_attn.v_proj.weight"  # the tensor conftest's `nan` checkpoint poisons
