"""Check that every citation of a repository document ("MMD_FACTS §x.y", "docs/<name>.md §x") resolves.

A citation resolves when the document it names is a file inside the repository and every section number it cites is
the number of a Markdown heading in that file (``## 2. …``, ``### 2.2 …``; headings inside fenced code blocks do not
count). Standard library only.

What counts as a citation (in ``.py`` files, docstrings, comments and strings alike, and in ``.md`` files):

* a document name followed by section numbers: ``MMD_FACTS §x.y``, ``MMD_FACTS.md §x.y``, ``docs/MMD_FACTS.md §x.y``,
  ``docs/<name>.md §x``; several as ``§a, §b`` / ``§a / §b`` / ``§a and §b``, ranges as ``§a-§b`` or ``§a–b`` (both
  ends are checked). For MMD_FACTS the older forms without the sign are read too (``MMD_FACTS 2.5, 5.3``,
  ``MMD_FACTS.md sections 3 and 4``), so they are checked rather than skipped.
* a bare ``§x.y`` with no document name in front: in a ``.py`` file it cites the document named last before it in
  the same file (none named: unresolved); in a ``.md`` file it cites the document named last before it in the same
  paragraph (or table), else that ``.md`` file itself.
* in a ``.py`` file, any mention of MMD_FACTS or of a ``docs/….md`` path, even without a section, must name a file in
  the repository (so the shared notes' path ``../shared/docs/…``, outside the repository, is reported).

Name resolution: a path with a folder (``docs/MMD_FACTS.md``) is taken from the repository root, or else from the
citing file's folder; a bare name (``MMD_FACTS``, ``MMD_FACTS.md``) is looked for in ``docs/``, then at the root, then
beside the citing file. ``.md`` is added when missing. Nothing outside the repository root resolves.

Files scanned: ``git ls-files --cached --others --exclude-standard`` when the root is a git work tree (tracked and
new, not ignored), else every file under the root outside hidden folders, ``.venv``, ``__pycache__`` and
``node_modules``; of those, the ``.py`` and ``.md`` files.

Usage::

    python tools/check_citations.py [--root DIR] [--list]

prints one line per unresolved citation (``path:line: cited text: reason``) and exits 1 if there is any, else 0.
``--list`` also prints every citation found and a summary count. ``tests/tools/test_citations.py`` runs the check.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Citation", "find_citations", "unresolved", "heading_numbers", "main"]

_SEC = "\u00a7"  # the section sign, written as an escape so this file cites nothing itself
_NUM = r"\d+(?:\.\d+)*"
# A document name: optional folders, then MMD_FACTS (".md" optional) or any NAME.md.
_DOC = re.compile(r"(?<![\w/.-])(?P<doc>(?:[\w.-]+/)*(?:MMD_FACTS(?:\.md)?|[\w-][\w.-]*\.md))(?![\w])")
# What may stand between a document name and its first section number: closing quotes / backticks, spaces, at most
# one line break (followed by an optional comment sign), an optional "section(s)" word.
_GAP = re.compile(r"[`'\"]*[ \t]*(?:\n[ \t]*#?[ \t]*)?(?:sections?[ \t]+)?")
_ITEM = re.compile(rf"(?P<sign>{_SEC}[ \t]?)?(?P<num>{_NUM})(?![\w.]*\w)")
_SEP = re.compile(r"[ \t]*(?P<sep>,|/|-|\u2013|\band\b)[ \t]*")
_BARE = re.compile(rf"{_SEC}[ \t]?(?P<num>{_NUM})")
_HEADING = re.compile(rf"^[ ]{{0,3}}#{{1,6}}[ \t]+(?:{_SEC}[ \t]?)?(?P<num>{_NUM})\.?(?=\s|$)")
_FENCE = re.compile(r"^[ ]{0,3}(```|~~~)")
_SKIP_DIRS = {".venv", "venv", "__pycache__", "node_modules", "build", "dist"}


@dataclass
class Citation:
    """One citation found in a file.

    Attributes:
        path: the citing file, relative to the root (POSIX separators).
        line: 1-based line of the citation's first character.
        text: the citation as written (document name and section list, or the bare section).
        doc: the document name as written, or as inferred for a bare section ("" when none could be inferred).
        sections: the section numbers cited (both ends of a range); empty for a mention without sections.
        target: the resolved document, relative to the root, or None.
        problems: why it does not resolve; empty when it does.
        span: (start, end) character offsets of ``text`` in the citing file.
    """

    path: str
    line: int
    text: str
    doc: str
    sections: tuple[str, ...] = ()
    target: str | None = None
    problems: list[str] = field(default_factory=list)
    span: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: {self.text!r}"
        return f"{where}: {'; '.join(self.problems)}" if self.problems else f"{where} -> {self.target}"


def heading_numbers(text: str) -> set[str]:
    """Section numbers of the Markdown headings in ``text`` (``## 2. Title`` -> "2", ``### 5.10 T`` -> "5.10")."""
    out, fenced = set(), False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            m = _HEADING.match(line)
            if m:
                out.add(m.group("num"))
    return out


def _scanned_files(root: Path) -> list[Path]:
    try:
        res = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True)
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             check=True, text=True).stdout.strip()
        if Path(top).resolve() != root:
            raise ValueError("root is not the top of its git work tree")
        names = [n for n in res.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
        files = [root / n for n in names]
    except (OSError, subprocess.CalledProcessError, ValueError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
            files.extend(Path(dirpath) / f for f in sorted(filenames))
    return sorted(f for f in files if f.suffix in (".py", ".md") and f.is_file())


def _resolve(name: str, citing: Path, root: Path) -> Path | None:
    """The repository file a document name refers to, or None."""
    cand = name if name.endswith(".md") else name + ".md"
    if "/" in cand:
        bases = [root, citing.parent]
    else:
        bases = [root / "docs", root, citing.parent]
    for base in bases:
        p = (base / cand).resolve()
        if p.is_file() and (p == root or root in p.parents):
            return p
    return None


def _section_list(text: str, pos: int, doc: str) -> tuple[list[str], int]:
    """Section numbers cited right after a document name ending at ``pos``; returns (numbers, end position)."""
    g = _GAP.match(text, pos)
    m = _ITEM.match(text, g.end())
    if not m:
        return [], pos
    signed = bool(m.group("sign"))
    if not signed and "MMD_FACTS" not in doc:
        return [], pos              # other documents are cited only with the section sign
    nums, end = [m.group("num")], m.end()
    while True:
        s = _SEP.match(text, end)
        if not s:
            break
        m = _ITEM.match(text, s.end())
        if not m:
            break
        is_range = s.group("sep") in ("-", "\u2013")
        if signed and not m.group("sign") and not is_range:
            break                   # "§2.1, 1 unit = 8 cm": a bare number after a signed list is not a section
        nums.append(m.group("num"))
        end = m.end()
    return nums, end


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def find_citations(root: str | os.PathLike = ".") -> list[Citation]:
    """Every citation in the repository at ``root``, resolved (see the module docstring for the rules).

    Returns:
        Citations in file order, then position order; ``problems`` is empty for those that resolve.
    """
    root = Path(root).resolve()
    headings: dict[Path, set[str]] = {}

    def sections_of(p: Path) -> set[str]:
        if p not in headings:
            headings[p] = heading_numbers(p.read_text(encoding="utf-8", errors="replace"))
        return headings[p]

    out: list[Citation] = []
    for f in _scanned_files(root):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        rel = f.relative_to(root).as_posix()
        is_md = f.suffix == ".md"
        covered: list[tuple[int, int]] = []
        found: list[tuple[int, Citation]] = []
        docs_by_pos: list[tuple[int, str, Path | None]] = []
        for m in _DOC.finditer(text):
            doc = m.group("doc")
            nums, end = _section_list(text, m.end(), doc)
            target = _resolve(doc, f, root)
            is_mmd = "MMD_FACTS" in doc
            docs_by_pos.append((m.start(), doc, target))
            if not nums and not (not is_md and (is_mmd or "docs/" in doc)):
                continue            # a plain mention of some other .md file is not a citation
            end = end if nums else m.end()
            c = Citation(rel, _line_of(text, m.start()), text[m.start():end], doc, tuple(nums), span=(m.start(), end))
            c.target = target.relative_to(root).as_posix() if target else None
            if target is None:
                c.problems.append(f"document {doc!r} is not a file in the repository")
            found.append((m.start(), c))
            covered.append((m.start(), end))
        for m in _BARE.finditer(text):
            if any(a <= m.start() < b for a, b in covered):
                continue
            if is_md:
                par = text.rfind("\n\n", 0, m.start())
                before = [d for d in docs_by_pos if par < d[0] < m.start()]
                doc, target = (before[-1][1], before[-1][2]) if before else (rel, f)
            else:
                before = [d for d in docs_by_pos if d[0] < m.start()]
                doc, target = (before[-1][1], before[-1][2]) if before else ("", None)
            c = Citation(rel, _line_of(text, m.start()), m.group(0), doc, (m.group("num"),), span=m.span())
            c.target = target.relative_to(root).as_posix() if target else None
            if not doc:
                c.problems.append("bare section with no document named before it in the file")
            elif target is None:
                c.problems.append(f"bare section refers to {doc!r}, which is not a file in the repository")
            found.append((m.start(), c))
        for _, c in sorted(found, key=lambda t: t[0]):
            if c.target is not None:
                have = sections_of(root / c.target)
                missing = [n for n in c.sections if n not in have]
                if missing:
                    c.problems.append(f"no section {', '.join(_SEC + n for n in missing)} in {c.target}")
            out.append(c)
    return out


def unresolved(root: str | os.PathLike = ".") -> list[Citation]:
    """The citations under ``root`` that do not resolve (empty list: all resolve)."""
    return [c for c in find_citations(root) if c.problems]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                    help="repository root (default: the checkout this script is in)")
    ap.add_argument("--list", action="store_true", help="also print every citation found, and a summary")
    args = ap.parse_args(argv)
    cites = find_citations(args.root)
    bad = [c for c in cites if c.problems]
    for c in (cites if args.list else bad):
        print(c)
    if args.list or bad:
        n_sec = sum(len(c.sections) for c in cites)
        print(f"{len(cites)} citations ({n_sec} section numbers) in "
              f"{len({c.path for c in cites})} files; {len(bad)} unresolved", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
