"""Honest words (issue 11 #9, #10, #5): French agreement for 0, 1 and many; counters that count what
the command does; each message once; bare `doit forget` / `doit approve` refuse in French; `--help`;
`.env` typos and malformed lines; setting values answered as the user writes them; unknown model."""

from __future__ import annotations

import re

import pytest

from catalogue.core.errors import InputError
from catalogue.core.settings import load_settings
from catalogue.tasks.reporter import count


def test_count_agrees_for_zero_one_and_many():
    assert [count(n, "vue") for n in (0, 1, 2)] == ["0 vue", "1 vue", "2 vues"]
    assert count(3, "référence envoyée", "références envoyées") == "3 références envoyées"


@pytest.fixture
def two_refs(project):
    project.photo("A-1", "face.jpg", seed=1)
    project.photo("B-2", "face.jpg", seed=2)
    return project


def test_plan_and_summary_agree_with_their_numbers(two_refs):
    p = two_refs
    plan = p.doit("plan", check=True).stdout
    assert "Plan : 4 vues à générer (rendu local, gratuit), 0 référence à envoyer, 0 à jour." in plan
    p.doit("1_face:A-1", check=True)
    one = p.doit("generate:A-1", check=True).stdout
    assert re.search(r"Terminé : 1 générée, 1 à jour, 0 échec \(", one), one
    plan = p.doit("plan", "generate:B-2", check=True).stdout
    assert "Plan : 2 vues à générer" in plan
    p.doit(check=True)
    plan = p.doit("plan", check=True).stdout
    assert "Plan : 0 vue à générer, 0 référence à envoyer, 4 à jour." in plan
    assert "aucun" not in plan and "vues à générer" not in plan


def test_plan_with_gemini_counts_one_call(project, fake_gemini_for):
    project.photo("A-1", "face.jpg", seed=1)
    project.doit("1_face:A-1", check=True)
    plan = project.doit("plan", check=True).stdout
    assert re.search(r"Plan : 1 vue à générer \(1 appel au générateur gemini, coût estimé \d+\.\d\d \$\), "
                     r"0 référence à envoyer, 1 à jour\.", plan), plan


def test_check_api_without_a_key_says_it_once_and_counts_nothing(project):
    run = project.doit("check_api")
    assert run.returncode == 1
    assert run.stdout.count("GEMINI_API_KEY est vide") == 1, run.stdout
    assert "[1/0]" not in run.stdout and "Terminé" not in run.stdout


def test_upload_counters_count_the_uploads(project):
    for i in range(3):
        project.photo(f"R-{i}", "face.jpg", seed=i)
    project.doit(check=True)  # 6 views made: `doit upload` then has 3 uploads to do
    project.doit("approve", "--all", check=True)
    run = project.doit("upload", extra_env={"PRODUCTS_MAP": "none.csv"})
    lines = [ln for ln in run.stdout.splitlines() if re.match(r"\[\d+/\d+\]", ln)]
    assert [ln.split(" ", 1)[0] for ln in lines] == ["[1/3]", "[2/3]", "[3/3]"], run.stdout


def test_bare_forget_and_bare_approve_refuse_in_french_unknown_reference_too(two_refs):
    p = two_refs
    p.doit(check=True)
    forget = p.doit("forget")
    assert forget.returncode == 1 and "doit forget sans tâche" in forget.stdout
    approve = p.doit("approve")
    assert approve.returncode == 1
    assert "nommez la référence (doit approve:L100001-V09A), ou confirmez avec doit approve --all" in approve.stdout
    assert not list(p.output.glob("*/review.json"))  # nothing approved
    unknown = p.doit("approve:UNKNOWN")
    assert unknown.returncode == 1 and "Référence inconnue : « UNKNOWN »" in unknown.stdout
    assert "not found" not in unknown.stdout + unknown.stderr
    one = p.doit("approve:A-1", check=True)
    assert "A-1 : approuvé pour l'envoi" in one.stdout and not (p.output / "B-2" / "review.json").exists()
    every = p.doit("approve", "--all", check=True)
    assert "A-1 : approuvé" in every.stdout and "B-2 : approuvé" in every.stdout


def test_commands_answer_help(project):
    for command in ("plan", "reroll", "review", "forget"):
        run = project.doit(command, "--help")
        assert run.returncode == 0, (command, run.stdout, run.stderr)
        assert "PURPOSE" in run.stdout and "Error parsing" not in run.stdout + run.stderr


# --- .env ------------------------------------------------------------------------------------------

def test_dotenv_typos_and_malformed_lines_are_said_on_the_run_first_lines(project):
    project.photo("A-1", "face.jpg")
    (project.root / ".env").write_text(
        "# réglages\nGEMINI_API_KEYS=secret-value-123\nIMAGESIZE=1K\nGEMINI_MODLE=flash\n"
        "output_dir=out\nthis line is broken secret-value-456\nNO_PROXY=localhost\n", encoding="utf-8")
    run = project.doit("generate:A-1")
    assert run.returncode == 0, run.stdout + run.stderr
    head = run.stdout.splitlines()[:7]
    env = str(project.root / ".env")
    expected = [f"{env}, ligne 2 : « GEMINI_API_KEYS » n'est pas un réglage, il est ignoré ; vouliez-vous dire GEMINI_API_KEY ?",
                f"{env}, ligne 3 : « IMAGESIZE » n'est pas un réglage, il est ignoré ; vouliez-vous dire IMAGE_SIZE ?",
                f"{env}, ligne 4 : « GEMINI_MODLE » n'est pas un réglage, il est ignoré ; vouliez-vous dire GEMINI_MODEL ?",
                f"{env}, ligne 5 : « output_dir » n'est pas un réglage, il est ignoré ; vouliez-vous dire OUTPUT_DIR ?",
                f"{env}, ligne 6 : ligne illisible, ignorée (attendu NOM=valeur, ou un commentaire commençant par #)."]
    for message in expected:
        assert any(line == f"Attention : {message}" for line in head), (message, head)
    assert "NO_PROXY" not in run.stdout  # not a setting's look-alike: nothing to say
    assert "secret-value" not in run.stdout + run.stderr  # a line's content is never repeated
    assert "could not parse" not in run.stdout + run.stderr  # python-dotenv's English warning


def test_a_setting_value_is_answered_as_written(tmp_path):
    with pytest.raises(InputError) as err:
        load_settings(tmp_path, environ={"IMAGE_SIZE": "3K"})
    assert err.value.message == "Réglage IMAGE_SIZE invalide : « 3K » ; valeurs possibles : 1K, 2K, 4K."
    assert load_settings(tmp_path, environ={"IMAGE_SIZE": "4k"}).image_size == "4K"


def test_an_unknown_model_is_named_as_such_in_plan_and_run(project):
    project.photo("A-1", "face.jpg")
    env = {"GEMINI_MODEL": "pr0"}
    for args in (("plan",), ("generate:A-1",)):
        run = project.doit(*args, extra_env=env)
        assert "Attention : Modèle Gemini inconnu : « pr0 »" in run.stdout, (args, run.stdout)
    assert load_settings(project.root, environ={"GEMINI_MODEL": "flash"}).warnings == ()
