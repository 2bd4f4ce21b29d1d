"""Render the "Deploying" tables of docs/guide/deploying.md by running the checks of ``tests/test_deploy.py`` (the
same functions, ``convzoo.deploy.checks.PATHS``) for every family, every dim it has and every path.

    python tools/deploy_table.py                # print the markdown tables
    python tools/deploy_table.py --write docs/guide/deploying.md   # replace the tables between the deploy-table markers
    python tools/deploy_table.py --write docs/guide/deploying.md --paths weight_norm,spectral_norm
        # rerun only those checks; the other columns are read back from the page (--paths '': rerun none, relayout)

A cell is ✓ when the path passed in every dim the family has (dims where the path does not exist, such as
channels-last for 1-D, are left out), ✗ with the failing dims otherwise, — when the path exists in no dim.
The paths are split into ``GROUPS``, one table each, so that every table fits the guide's content width.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

START, END = "<!-- deploy-table:start -->", "<!-- deploy-table:end -->"
HEADERS = {
    "channels_last": "channels-last", "autocast_bf16": "autocast bf16", "double": "float64", "half": "float16",
    "compile": "compile (fullgraph)", "export": "torch.export (dyn. N, H, W)", "onnx": "ONNX → onnxruntime (dyn. N)",
    "jit_trace": "jit.trace", "unbatched": "unbatched", "empty_batch": "N = 0", "dtype_message": "dtype message",
    "weight_norm": "weight_norm", "spectral_norm": "spectral_norm",
}
# One table per group. mkdocs-material gives a header cell at least 5rem (100 px) and the guide's content column is
# about 780 px wide at a 1300 px window, so the family column and at most MAX_COLUMNS checks fit without scrolling.
MAX_COLUMNS = 5
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Number formats and dtypes", ("channels_last", "autocast_bf16", "double", "half", "dtype_message")),
    ("Graph capture and export", ("compile", "export", "onnx", "jit_trace")),
    ("Input shapes and weight parametrizations", ("unbatched", "empty_batch", "weight_norm", "spectral_norm")),
)

Cells = dict[str, dict[str, str]]  # family -> path -> "✓" | "✗ 2-D, 3-D" | "—"
Notes = dict[tuple[str, str], str]  # (family, path) -> the note a passing check returned


def check_groups(paths: Sequence[str]) -> None:
    """Every path in exactly one group, no group wider than MAX_COLUMNS: a new check must be placed by hand."""
    grouped = [p for _, group in GROUPS for p in group]
    if sorted(grouped) != sorted(paths):
        raise ValueError(f"GROUPS holds {sorted(grouped)}, checks.PATHS {sorted(paths)}: each path must be in "
                         "exactly one group")
    for title, group in GROUPS:
        if len(group) > MAX_COLUMNS:
            raise ValueError(f"group {title!r} has {len(group)} paths: at most MAX_COLUMNS={MAX_COLUMNS} fit")


def cell(outcomes: Sequence[tuple[int, str]]) -> str:
    """One cell from the (dim, 'ok' | 'fail' | 'n/a') outcomes of a family's dims."""
    failed = [f"{d}-D" for d, o in outcomes if o == "fail"]
    if failed:
        return "✗ " + ", ".join(failed)
    return "—" if all(o == "n/a" for _, o in outcomes) else "✓"


def run(paths: Sequence[str]) -> tuple[Cells, Notes]:
    """Run ``paths`` of ``checks.PATHS`` on every (family, dim): the cells and the notes of passing checks."""
    from convzoo.deploy import checks

    outcomes: dict[str, dict[str, list[tuple[int, str]]]] = {}
    notes: Notes = {}
    for name, dim in checks.cases():
        for path in paths:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    note = checks.PATHS[path](name, dim)
                    outcome = "ok"
                    if note:
                        notes[name, path] = note
                except checks.NotApplicable:
                    outcome = "n/a"
                except Exception as error:  # noqa: BLE001 - a failing path is a result here
                    outcome = "fail"
                    print(f"{name} {dim}-D {path}: {type(error).__name__}: {str(error).splitlines()[:1]}",
                          file=sys.stderr)
            outcomes.setdefault(name, {}).setdefault(path, []).append((dim, outcome))
    cells = {name: {path: cell(by_path[path]) for path in paths} for name, by_path in outcomes.items()}
    return cells, notes


def render(cells: Cells, notes: Notes, families: Sequence[str]) -> str:
    """The GROUPS' tables (rows in ``families``' order), then one line per note."""
    lines: list[str] = []
    for title, group in GROUPS:
        if lines:
            lines.append("")
        lines += [f"**{title}**", "", "| family | " + " | ".join(HEADERS[p] for p in group) + " |",
                  "|---|" + "---|" * len(group)]
        lines += [f"| {name} | " + " | ".join(cells[name][p] for p in group) + " |" for name in families]
    order = {p: i for i, p in enumerate(HEADERS)}
    for (name, path), note in sorted(notes.items(), key=lambda item: (item[0][0], order[item[0][1]])):
        lines.append(f"\n{name}/{HEADERS[path]}: {note}")
    return "\n".join(lines)


def parse(text: str) -> tuple[Cells, Notes, list[str]]:
    """Read back the cells, notes and family order of the tables between the markers of a page (any layout this
    tool wrote: one wide table or the GROUPS' tables)."""
    if START not in text or END not in text:
        raise ValueError(f"the page has no {START} ... {END} markers")
    block = text.split(START, 1)[1].split(END, 1)[0]
    by_header = {h: p for p, h in HEADERS.items()}
    cells: Cells = {}
    notes: Notes = {}
    families: list[str] = []
    columns: list[str] = []
    for line in block.splitlines():
        if line.startswith("| family |"):
            columns = [by_header[h.strip()] for h in line.strip().strip("|").split("|")[1:]]
        elif line.startswith("|") and not line.startswith("|---"):
            name, *values = [v.strip() for v in line.strip().strip("|").split("|")]
            if name not in cells:
                families.append(name)
            cells.setdefault(name, {}).update(zip(columns, values, strict=True))
        elif match := re.fullmatch(r"(\w+)/(.+?): (.*)", line.strip()):
            name, header, note = match.groups()
            notes[name, by_header[header]] = note
    return cells, notes, families


def main() -> None:
    from convzoo.deploy import checks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="PAGE", help="replace the tables between the deploy-table markers")
    parser.add_argument("--paths", metavar="P,Q", help="rerun only these checks, keeping the other columns "
                        "from the tables already in --write PAGE ('': rerun none, only lay the tables out again)")
    args = parser.parse_args()
    all_paths = list(checks.PATHS)
    check_groups(all_paths)
    paths = all_paths if args.paths is None else [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in checks.PATHS]
    if unknown:
        sys.exit(f"error: --paths {args.paths!r} names {unknown}: each must be one of {all_paths}")
    if args.paths is not None and not args.write:
        sys.exit("error: --paths needs --write PAGE: the other columns are read from that page's tables")
    families = list(dict.fromkeys(name for name, _ in checks.cases()))
    cells, notes = run(paths)
    text = ""
    if args.write:
        with open(args.write, encoding="utf-8") as f:
            text = f.read()
        if START not in text or END not in text:
            sys.exit(f"error: --write {args.write!r} has no {START} ... {END} markers")
    if args.paths is not None:
        old_cells, old_notes, _ = parse(text)
        for name in families:
            for path in all_paths:
                if path in paths:
                    continue
                if path not in old_cells.get(name, {}):
                    sys.exit(f"error: {args.write} has no {HEADERS[path]!r} cell for {name}: rerun it "
                             f"(--paths {path}, or no --paths to rerun every check)")
                cells.setdefault(name, {})[path] = old_cells[name][path]
        notes.update({key: note for key, note in old_notes.items() if key[1] not in paths and key[0] in families})
    table = render(cells, notes, families)
    if not args.write:
        print(table)
        return
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{table}\n{END}", text, flags=re.S)
    with open(args.write, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote the tables into {args.write}")


if __name__ == "__main__":
    main()
