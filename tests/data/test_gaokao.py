import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.data import BadRowError
from ablate.data.gaokao import GaokaoExams, normalise_category

REPO = Path(__file__).resolve().parents[2]
GAOKAO = Path(__file__).resolve().parents[3] / "shared/data/gaokao_bench"
FIXTURE = REPO / "tests/fixtures/gaokao"
FIXTURE_FILE = FIXTURE / "Data/Objective_Questions/2010-2022_Math_I_MCQs.json"

needs_data = pytest.mark.skipif(not GAOKAO.is_dir(), reason=f"GAOKAO-Bench copy not found at {GAOKAO}")


def raw_items(pattern: str) -> list[tuple[str, int, dict]]:
    """(file stem, position, item) straight from the JSON files, for checks independent of the loader."""
    return [
        (path.stem, pos, item)
        for path in sorted(GAOKAO.glob(f"Data/{pattern}"))
        for pos, item in enumerate(json.loads(path.read_text(encoding="utf-8"))["example"])
    ]


@pytest.fixture(scope="module")
def official():
    return GaokaoExams(path=str(GAOKAO)).read().set_index("id", drop=False)


@pytest.fixture(scope="module")
def present():
    return GaokaoExams(path=str(GAOKAO), total="present").read()


@needs_data
def test_keeps_every_objective_and_math_fill_in_item(official):
    objective = raw_items("Objective_Questions/*.json")
    fill_in = raw_items("Subjective_Questions/*_Math_*Fill-in-the-Blank.json")
    assert (len(objective), len(fill_in)) == (1781, 167)
    assert len(official) == 1948
    assert official["answer_type"].value_counts().to_dict() == {"choice": 1526, "sequence": 255, "math": 167}
    assert official["id"].is_unique
    assert official["exam_id"].nunique() == 173
    assert official["difficulty"].isna().all()
    # Every item keeps its points: slots x score for letter answers, score for fill-in.
    expected = sum(len(it["answer"]) * it["score"] for _, _, it in objective) + sum(
        it["score"] for _, _, it in fill_in
    )
    assert official["score"].sum() == pytest.approx(expected) == pytest.approx(10528.0)


@needs_data
def test_first_math_i_mcq(official):
    row = official.loc["2010-2022_Math_I_MCQs:0"]
    assert (row["answer"], row["score"], row["total"]) == ("D", 5.0, 150.0)
    assert row["value"] == pytest.approx(5 / 150)
    assert (row["exam_id"], row["subject"], row["year"], row["answer_type"]) == (
        "Math_I/2010/新课标",
        "Math_I",
        2010,
        "choice",
    )
    assert row["prompt"].startswith("1. （5 分) 已知集合") and row["prompt"] == row["prompt"].strip()


@needs_data
def test_multi_slot_items_score_each_slot(official):
    for stem, _, item in raw_items("Objective_Questions/2010-2022_English_Reading_Comp.json"):
        row = official.loc[f"{stem}:{item['index']}"]
        assert row["score"] == len(item["answer"]) * 2
        assert row["answer"] == "".join(item["answer"])
    cloze = official.loc["2010-2022_English_Fill_in_Blanks:0"]  # 20 blanks at 1.5 points
    assert (len(cloze["answer"]), cloze["score"], cloze["value"]) == (20, 30.0, pytest.approx(0.2))
    # A Physics multi-select answer ["BC"] is one slot: 6 points, not 12.
    physics = official[(official["subject"] == "Physics") & (official["answer"].str.len() > 1)]
    assert len(physics) == 23 and set(physics["score"]) == {6.0}


@needs_data
def test_math_fill_in_answers_are_bare(official):
    first = official.loc["2010-2022_Math_I_Fill-in-the-Blank:0"]
    assert first["answer"] == r"\frac{\mathrm{N}_{1}}{\mathrm{~N}}"  # was "$...$\n"
    assert (first["answer_type"], first["score"]) == ("math", 5)
    answer = official.loc["2010-2022_Math_I_Fill-in-the-Blank:34", "answer"]
    assert answer == r"\frac{2 \pi}{3}"  # was "$...$."
    assert official.loc["2010-2022_Math_II_Fill-in-the-Blank:37", "answer"] == "4"  # was "4 ."


@needs_data
def test_official_totals_hold_every_exam(official):
    exams = official.groupby("exam_id").agg(points=("score", "sum"), total=("total", "first"))
    assert (exams["points"] <= exams["total"]).all()
    paper_total = official.groupby(official["exam_id"].str.split("/").str[0])["total"].unique()
    assert {k: list(v) for k, v in paper_total.items()} == {
        "Chinese": [150],
        "English": [150],
        "Humanities": [300],
        "Math_I": [150],
        "Math_II": [150],
        "Science": [300],
    }
    assert official["value"].mean() == pytest.approx(0.027755, abs=1e-6)
    assert (official["value"] > 0.1).sum() == 30  # only the 30-point English cloze items


@needs_data
def test_present_totals_make_each_exam_sum_to_one(present):
    sums = present.groupby("exam_id")["value"].sum()
    assert sums.to_numpy() == pytest.approx([1.0] * len(sums))
    assert present["value"].mean() == pytest.approx(0.088809, abs=1e-6)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("（新课标ⅰ）", "新课标Ⅰ"),
        ("（新课标i）", "新课标Ⅰ"),
        ("（新课标Ⅰ卷）", "新课标Ⅰ"),
        ("（新课标II）", "新课标Ⅱ"),
        ("（新课标iii）", "新课标Ⅲ"),
        ("（全国卷ii）", "全国卷Ⅱ"),
        ("（全国卷iii）", "全国卷Ⅲ"),
        ("（新课标卷）", "新课标"),
        ("（甲卷）", "全国甲卷"),
        ("(全国乙卷)", "全国乙卷"),
        ("（解析版）", "解析版"),
    ],
)
def test_normalise_category(raw, normal):
    assert normalise_category(raw) == normal


@needs_data
def test_category_spellings_collapse_into_one_paper(official):
    categories = set(official["exam_id"].str.split("/").str[2])
    assert not {c for c in categories if set(c) & set("ⅰⅱⅲiI（）()")}
    assert categories == {"新课标", "新课标Ⅰ", "新课标Ⅱ", "新课标Ⅲ", "全国卷Ⅱ", "全国卷Ⅲ"} | {
        "全国甲卷",
        "全国乙卷",
        "解析版",
    }
    # 2021 文综: History and Politics say 甲卷, Geography 全国甲卷.
    humanities = official[official["exam_id"] == "Humanities/2021/全国甲卷"]
    assert set(humanities["subject"]) == {"History", "Political_Science", "Geography"}
    # 2020 Chinese: 全国卷iii (language use) and 全国卷Ⅲ (modern literature) are one paper.
    chinese = official[official["exam_id"] == "Chinese/2020/全国卷Ⅲ"]
    assert set(chinese["id"].str.split(":").str[0]) == {
        "2010-2022_Chinese_Lang_and_Usage_MCQs",
        "2010-2022_Chinese_Modern_Lit",
    }


@needs_data
def test_science_subjects_share_one_paper_and_math_papers_stay_apart(official):
    science = official[official["exam_id"] == "Science/2011/新课标"]
    assert set(science["subject"]) == {"Physics", "Chemistry", "Biology"}
    assert science["score"].sum() == 84.0
    assert set(official[official["subject"] == "Math_I"]["exam_id"].str.split("/").str[0]) == {"Math_I"}
    assert set(official[official["subject"] == "Math_II"]["exam_id"].str.split("/").str[0]) == {"Math_II"}


@needs_data
def test_load_splits_by_exam():
    df = GaokaoExams(path=str(GAOKAO / "Data")).load()  # the Data dir itself works too
    assert len(df) == 1948
    assert df.groupby("exam_id")["split"].nunique().max() == 1
    assert 0.1 <= (df["split"] == "test").mean() < 0.15


@needs_data
def test_subjects_filter():
    df = GaokaoExams(path=str(GAOKAO), subjects=["2010-2022_Math_I_MCQs"]).read()
    assert len(df) == 214 and set(df["subject"]) == {"Math_I"}
    with pytest.raises(ValueError, match=r"\['Math'\]: valid choices are 2010-2013_English_MCQs, "):
        GaokaoExams(path=str(GAOKAO), subjects=["Math"]).read()


def test_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.path=nowhere/gaokao"):
        GaokaoExams(path="nowhere/gaokao").read()
    with pytest.raises(FileNotFoundError, match=r"no Data/Objective_Questions"):
        GaokaoExams(path=str(tmp_path)).read()
    with pytest.raises(ValueError, match=r"data.total='paper': valid choices are official, present"):
        GaokaoExams(path=str(tmp_path), total="paper")


def test_bad_row_names_file_item_and_line():
    with pytest.raises(BadRowError, match=r"2010-2022_Math_I_MCQs.json:item 1 \(line 15\): missing 'score'"):
        GaokaoExams(path=str(FIXTURE)).read()


def test_skip_keeps_valid_rows_and_reports_the_rest():
    df = GaokaoExams(path=str(FIXTURE), on_bad_row="skip").read()
    assert df["id"].tolist() == ["2010-2022_Math_I_MCQs:0", "2010-2022_Math_I_MCQs:5"]
    assert df["answer"].tolist() == ["D", "AC"]
    assert df["score"].tolist() == [5.0, 10.0]
    assert df["exam_id"].tolist() == ["Math_I/2010/新课标", "Math_I/2010/新课标Ⅱ"]
    skipped = df.attrs["skip_report"].skipped
    assert [e.where for e in skipped] == [
        f"{FIXTURE_FILE}:item {i} (line {line})"
        for i, line in [(1, 15), (2, 25), (3, 36), (4, 45), (6, 67), (7, 78)]
    ]
    assert [e.reason for e in skipped] == [
        "missing 'score'",
        "'score' is not a number: 'five'",
        "empty 'answer'",
        "missing 'question'",
        "'answer' must be a list of option letters, got ['12']",
        "missing 'year'",
    ]


def test_points_over_the_official_total_name_the_exam(tmp_path):
    folder = tmp_path / "Data/Objective_Questions"
    folder.mkdir(parents=True)
    item = {"year": "2015", "category": "（新课标ⅰ）", "answer": ["A"], "score": 5}
    items = [{**item, "question": f"q{i}", "index": i} for i in range(31)]  # 155 points
    (folder / "2010-2022_Math_II_MCQs.json").write_text(json.dumps({"keywords": "x", "example": items}))
    with pytest.raises(ValueError, match=r"exam 'Math_II/2015/新课标Ⅰ' has 155 points .* official total 150"):
        GaokaoExams(path=str(tmp_path)).read()
    df = GaokaoExams(path=str(tmp_path), total="present").read()
    assert df["value"].sum() == pytest.approx(1.0) and set(df["total"]) == {155.0}


@needs_data
def test_conf_gaokao_instantiates():
    cfg = OmegaConf.load(REPO / "conf/data/gaokao.yaml")
    assert (cfg.total, cfg.subjects, cfg.on_bad_row) == ("official", None, "error")
    cfg.path = str(GAOKAO)
    cfg.subjects = ["2010-2022_Math_I_Fill-in-the-Blank"]
    loader = instantiate(cfg)
    assert isinstance(loader, GaokaoExams)
    df = loader.load()
    assert len(df) == 81 and set(df["answer_type"]) == {"math"}
