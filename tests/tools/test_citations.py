"""Every citation of a repository document ("MMD_FACTS §x", "docs/<name>.md §x") resolves (tools/check_citations.py).

The first test runs the checker on this repository and fails listing the citations that do not resolve. The others
run it on small repositories written to a temporary folder, so the checker is shown to find each kind of bad
citation (and to accept every good form). In this file the section sign is written as ``S`` (a variable) so that the
file cites nothing itself.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_citations", REPO / "tools" / "check_citations.py")
cc = importlib.util.module_from_spec(_spec)
sys.modules["check_citations"] = cc
_spec.loader.exec_module(cc)

S = "\u00a7"
FACTS = "MMD_" + "FACTS"
D = "docs" + "/"  # a folder, kept apart from the file names below for the same reason


def test_repository_citations_resolve():
    bad = cc.unresolved(REPO)
    if bad:
        pytest.fail(f"{len(bad)} citations do not resolve (fix the citation, or add the section to the doc):\n"
                    + "\n".join(map(str, bad)), pytrace=False)


def test_every_citation_like_text_in_the_repository_is_checked():
    """No citation is skipped: each MMD_FACTS mention in a .py file, and each section sign followed by a number in a
    .py or .md file, lies inside a citation the checker found (so the first test cannot pass by finding nothing)."""
    cites = cc.find_citations(REPO)
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in cites:
        spans.setdefault(c.path, []).append(c.span)
    assert any(c.target == "docs/" + FACTS + ".md" and c.sections for c in cites)
    unchecked = []
    for f in cc._scanned_files(REPO):
        rel = f.relative_to(REPO).as_posix()
        text = f.read_text(encoding="utf-8", errors="replace")
        pat = FACTS + "|" + S + r"\s?\d" if f.suffix == ".py" else S + r"\s?\d"
        for m in re.finditer(pat, text):
            if not any(a <= m.start() < b for a, b in spans.get(rel, [])):
                line = text.count("\n", 0, m.start()) + 1
                unchecked.append(f"{rel}:{line}: {text[m.start():m.start() + 40]!r}")
    assert not unchecked, "text that looks like a citation but was not checked:\n" + "\n".join(unchecked)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


DOC = (f"# Facts\n\n## 1. Files\n\n### 1.2 Names\nsee {S}2\n\n## 2. Meaning\n\n### 2.10 Late\n\n"
       f"```\n### 7.7 not a heading (code block)\n```\n")


def _problems(root: Path) -> dict[tuple[str, int], str]:
    """(path, line) -> the problems of the unresolved citations starting on that line, joined by '; '."""
    out: dict[tuple[str, int], list[str]] = {}
    for c in cc.unresolved(root):
        out.setdefault((c.path, c.line), []).extend(c.problems)
    return {k: "; ".join(v) for k, v in out.items()}


def test_good_forms_resolve(tmp_path):
    good = "\n".join([
        f'"""Docstring: {FACTS} {S}1.2 and {FACTS}.md {S}2, docs/{FACTS}.md {S}1.2, {S}2.10.',
        f"Lists: ({FACTS} {S}1.2 / {S}2.10) ({FACTS} {S}1 and {S}2) ({FACTS} {S}1.2-{S}2) ({FACTS} {S}1.2\u20132.10).",
        f"Older forms: ({FACTS} 2.10, 1.2) ({FACTS}.md sections 1 and 2) ({FACTS} 1.2: text).",
        f"A bare {S}1.2 cites the document named before it; {S}2.10 too.",
        f"{FACTS} {S}2.10, 1 unit = 8 cm (the bare 1 after a signed list is not a section).",
        '"""',
        f"# comment: docs/{FACTS}.md",
        f"#   {S}2 (continued on the next line)",
        f"# {D}other.md {S}3",
    ])
    _write(tmp_path, {"docs/" + FACTS + ".md": DOC, D + "other.md": "## 3 Other\n",
                      "pkg/mod.py": good})
    cites = cc.find_citations(tmp_path)
    assert not [c for c in cites if c.problems], [str(c) for c in cites if c.problems]
    secs = [n for c in cites if c.path == "pkg/mod.py" for n in c.sections]
    # every section number written above was read (the "1 unit" is not one)
    assert secs.count("1.2") == 8 and secs.count("2.10") == 6 and "3" in secs
    assert all(c.target in (D + FACTS + ".md", D + "other.md") for c in cites)
    assert cc.main(["--root", str(tmp_path)]) == 0


def test_bad_citations_are_reported(tmp_path):
    bad = "\n".join([
        f'"""{FACTS} {S}1.2 is fine, {FACTS} {S}3.1 is not a heading.',       # 1
        f"{FACTS} {S}1.2, {S}7.7 (only in a code block) and {FACTS} 9 (bare-number form).",  # 2
        f"Layout follows shared/docs/{FACTS}.md.",                               # 3
        f"So {S}1.2 here refers to that outside file.",                          # 4
        f"{D}missing.md {S}1 and {D}nothere.md are not in the repository.",  # 5
        f'{FACTS} {S}1.2-{S}4.4 (a range whose end is missing)"""',             # 6
    ])
    _write(tmp_path, {"docs/" + FACTS + ".md": DOC, "a.py": bad, "b.py": f"# {S}1.2 with no document named\n",
                      "notes.md": f"A plain mention of other.md is fine.\n\n{S}5: no such heading in this file.\n"})
    got = _problems(tmp_path)
    assert set(got) == {("a.py", 1), ("a.py", 2), ("a.py", 3), ("a.py", 4), ("a.py", 5), ("a.py", 6),
                        ("b.py", 1), ("notes.md", 3)}, got
    assert f"no section {S}3.1" in got["a.py", 1]
    assert f"{S}7.7" in got["a.py", 2] and f"{S}9" in got["a.py", 2]
    assert "not a file in the repository" in got["a.py", 3] and "not a file" in got["a.py", 4]
    assert "missing.md" in got["a.py", 5] and "nothere.md" in got["a.py", 5]
    assert got["a.py", 6] == f"no section {S}4.4 in docs/{FACTS}.md"
    assert "no document named" in got["b.py", 1]
    assert f"no section {S}5 in notes.md" in got["notes.md", 3]


def test_cli_exit_status_and_listing(tmp_path):
    _write(tmp_path, {"docs/" + FACTS + ".md": DOC, "m.py": f"# {FACTS} {S}1.2, {S}6\n"})
    res = subprocess.run([sys.executable, str(REPO / "tools" / "check_citations.py"), "--root", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stdout.strip() == f"m.py:1: '{FACTS} {S}1.2, {S}6': no section {S}6 in docs/{FACTS}.md"
    (tmp_path / "m.py").write_text(f"# {FACTS} {S}1.2, {S}2\n", encoding="utf-8")
    res = subprocess.run([sys.executable, str(REPO / "tools" / "check_citations.py"), "--root", str(tmp_path),
                          "--list"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "-> docs/" + FACTS + ".md" in res.stdout and "0 unresolved" in res.stderr


def test_headings_outside_code_blocks_only():
    assert cc.heading_numbers(DOC) == {"1", "1.2", "2", "2.10"}
    assert cc.heading_numbers(f"#### {S}4.1 Signed heading\n## 10. Ten\nnot # 3 a heading\n") == {"4.1", "10"}


@pytest.mark.parametrize("name", ["MMD_FACTS", "MMD_FACTS.md", "docs/MMD_FACTS.md"])
def test_repository_doc_has_the_cited_top_sections(name):
    """The repository's own MMD facts document keeps the five top-level sections the code cites."""
    target = cc._resolve(name, REPO / "core" / "x.py", REPO)
    assert target == REPO / "docs" / "MMD_FACTS.md"
    assert {"1", "2", "3", "4", "5"} <= cc.heading_numbers(target.read_text(encoding="utf-8"))
