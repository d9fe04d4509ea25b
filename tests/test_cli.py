"""`aya` on bad input: every case exits with status 2, names the file and row, the key or the tensor, and writes nothing."""

import io
import json
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_profile import BAD_PROFILES
from test_prompt_sources import BAD_FILES

from aya_assets.cli.main import main

# Cases beyond the loader's own list: sizes, ids and formats that only show up in real files.
MORE_BAD_FILES = [
    ("one_megabyte_text", ('{"text": "' + "b" * 1_000_000 + '"}\n').encode(), r"bad\.jsonl:1: text is 1000000 characters"),
    ("duplicate_ids", b'{"id": "q1", "text": "one"}\n{"id": "q2", "text": "two"}\n{"id": "q1", "text": "three"}\n',
     r"bad\.jsonl:3: duplicate id 'q1' \(first at .*bad\.jsonl:1\)"),
    ("csv_given_as_jsonl", b"text,language\nhello,en\n", r"bad\.jsonl:1: invalid JSON"),
    ("json_array_not_lines", b'[{"text": "a"},\n{"text": "b"}]\n', r"bad\.jsonl:1: invalid JSON"),
]


def parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": ["hello"]}), sink)
    return sink.getvalue()


def run_aya(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    stderr, sys.stderr = sys.stderr, err
    try:
        code = main(list(argv))
    finally:
        sys.stderr = stderr
    return code, err.getvalue()


@pytest.fixture
def cli_home(aya_home, tmp_path, monkeypatch):
    """AYA_HOME and DAGSTER_HOME in tmp_path."""
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)
    return aya_home


def written(home) -> list:
    """Artifacts a failed command must not have left: warehouse tables, models, temp files."""
    data = home / "data"
    return [p for p in data.rglob("*") if p.is_file() and p.parent.name != "dagster_home" and "dagster" not in p.parts
            and p.name != "aya.duckdb"] if data.exists() else []


@pytest.mark.parametrize("name, content, message", [*BAD_FILES, *MORE_BAD_FILES,
                                                     ("parquet_bytes_in_jsonl", parquet_bytes(), r"bad\.jsonl: not UTF-8")],
                         ids=[c[0] for c in [*BAD_FILES, *MORE_BAD_FILES]] + ["parquet_bytes_in_jsonl"])
def test_bad_prompt_file_exits_non_zero_naming_file_and_row(cli_home, write_profile, tmp_path, name, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    columns = {"split": "split", "id": "id"} | ({"language": "lang"} if name == "unknown_language" else {})
    source = {"kind": "jsonl", "name": "bad", "path": str(bad), "columns": columns}
    if "language" not in columns:
        source["language"] = "en"
    profile = write_profile(prompts={"sources": [source]})
    code, err = run_aya("--profile", profile, "materialize", "--select", "prompts")
    assert code == 2 and re.search(r"^aya: (\S+( \[\w+\])?: )?PromptSourceError: ", err, re.M)
    assert re.search(message, err), err
    assert written(cli_home) == []


@pytest.mark.parametrize("overrides, message", BAD_PROFILES)
def test_bad_profile_exits_2_naming_the_key(cli_home, write_profile, overrides, message):
    profile = write_profile(**overrides)
    code, err = run_aya("--profile", profile, "materialize", "--select", "prompts")
    assert code == 2 and re.search(r"^aya: (\S+( \[\w+\])?: )?ProfileError: ", err, re.M)
    assert profile in err and re.search(message, err), err
    assert written(cli_home) == []


@pytest.mark.parametrize(
    "broken, error, message",
    [
        ("wrong_shapes", "CheckpointError", r"tensor model\.layers\.0\.mlp\.down_proj\.weight has shape \[32, 96\], config\.json implies \[32, 64\]"),
        ("small_vocab", "CheckpointError", r"vocabulary mismatch"),
        ("nan", "CheckpointError", r"NaN in tensor model\.layers\.1\.self_attn\.v_proj\.weight"),
        # Caught when the profile loads, naming the key: nothing is built before it.
        ("no_config", "ProfileError", r"models\.student\.path: .*no config\.json"),
    ],
)
def test_bad_configured_checkpoint_exits_non_zero_naming_the_tensor(cli_home, write_profile, ckpt, broken, error, message):
    good = str(ckpt["a"])
    profile = write_profile(models={"build": False, "teachers": [{"name": "t", "path": good}],
                                    "student": {"name": "s", "path": str(ckpt[broken])},
                                    "reward_model": {"name": "r", "path": good}, "translation_source": None})
    code, err = run_aya("--profile", profile, "materialize", "--select", "student_base")
    assert code == 2 and re.search(rf"^aya: (\S+( \[\w+\])?: )?{error}: ", err, re.M) and str(ckpt[broken]) in err
    assert re.search(message, err), err
    assert written(cli_home) == []


def test_sql_refusal_and_error_exit_codes(cli_home):
    assert run_aya("sql", "drop view prompts")[0] == 2
    code, err = run_aya("sql", "select * from read_csv('/etc/passwd')")
    assert code == 2 and "aya sql: refused: `aya sql` opens no file" in err


def test_sql_csv_writes_lists_and_structs_as_json(cli_home, capsys):
    assert main(["sql", "select [1, 2] as xs, {'a': 'é'} as s, 3 as n", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["xs,s,n", '"[1, 2]","{""a"": ""é""}",3']


def test_a_failed_step_is_one_line_naming_the_asset_and_the_run(cli_home, write_profile, tmp_path):
    """A blocking check that fails (English prompts labelled Greek): exit 1, the asset, the cause, the run's id."""
    english = ["How do I sort a list of numbers in Python?", "Write a short poem about the sea at night.",
               "What is the capital of Australia and why was it chosen?", "Explain how a bicycle stays upright."] * 3
    question = tmp_path / "question.jsonl"
    question.write_text("".join(json.dumps({"question_id": f"q{i}", "category": "c", "cluster": "c",
                                            "turns": [{"content": f"{text} ({i})"}]}) + "\n"
                                for i, text in enumerate(english)))
    profile = write_profile(prompts={"sources": [{"kind": "seed"}, {"kind": "arena_hard", "path": str(question),
                                                                   "language": "el"}]})
    code, err = run_aya("--profile", profile, "materialize", "--select", "prompts")
    lines = [line for line in err.splitlines() if line.startswith("aya: ")]
    assert code == 1 and len(lines) == 1, err
    assert re.match(r"aya: prompts: DagsterAssetCheckFailedError: failed checks: prompts/prompts_language_id: .*failing_languages: el \(\d+%\).*"
                    r"the run's log: [0-9a-f-]{36}", lines[0]), lines
    assert "Traceback" not in err


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_is_a_whole_number_of_at_least_one(jobs, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["materialize", "--jobs", jobs])
    assert exited.value.code == 2 and "--jobs: expected a whole number of at least 1" in capsys.readouterr().err
