"""Write the bundled red-team set, one aya_<iso 639-3>.jsonl per Aya language, from phrasebook.json.

Every row is one request frame x one harmful action, so held-out rows are new combinations of parts seen in training.

    .venv/bin/python data/seed/redteam/build.py [OUT_DIR]   # default: this folder
"""

import json
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
SELF_HARM = "Self-Harm"  # answered with a redirection to help, not a bare refusal


def fill(template: str, action: str | dict) -> str:
    """The template with the action's forms filled in: a string is the form {x}; {you} (the answer's) defaults to it."""
    forms = {"x": action} if isinstance(action, str) else action
    return unicodedata.normalize("NFC", template.format(**{"you": forms["x"], **forms}))


def sentence_case(text: str, code: str) -> str:
    # Turkish frames open with the action; Python would capitalize its dotted i as "I", not "İ".
    return ("İ" if code == "tur" and text[:1] == "i" else text[:1].upper()) + text[1:]


def rows(book: dict, code: str) -> list[dict]:
    lang, english = book["languages"][code], book["languages"]["eng"]
    out = []
    for action, categories in book["categories"].items():
        for number, (frame, english_frame) in enumerate(zip(lang["frames"], english["frames"], strict=True), start=1):
            english_prompt = sentence_case(fill(english_frame, english["actions"][action]), "eng")
            translation = None if code == "eng" else english_prompt
            refusal = lang["self_harm_refusal"] if SELF_HARM in categories else lang["refusal"]
            out.append({
                "id": f"{action}/frame_{number}",
                "prompt": sentence_case(fill(frame, lang["actions"][action]), code),
                "language": lang["name"],
                "harm_category": json.dumps(categories, ensure_ascii=False),  # a list literal in a string, as published
                "global_or_local": "global",
                "literal_translation": translation,
                "semantic_translation": translation,
                "explanation": None,
                "safe_reference": unicodedata.normalize("NFC", refusal),
                "unsafe_reference": fill(lang["compliance"], lang["actions"][action]),
            })
    return out


def main(out: Path) -> None:
    book = json.loads((HERE / "phrasebook.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    for code in book["languages"]:
        lines = [json.dumps(row, ensure_ascii=False) for row in rows(book, code)]
        (out / f"aya_{code}.jsonl").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
