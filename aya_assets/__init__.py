"""aya_assets: the Aya Expanse multilingual post-training recipe as Dagster assets."""
