"""Render the "Deploying" table of docs/guide/deploying.md by running the checks of ``tests/test_deploy.py`` (the
same functions, ``convzoo.deploy.checks.PATHS``) for every family, every dim it has and every path.

    python tools/deploy_table.py                # print the markdown table
    python tools/deploy_table.py --write docs/guide/deploying.md   # replace the table between the deploy-table markers

A cell is ✓ when the path passed in every dim the family has (dims where the path does not exist, such as
channels-last for 1-D, are left out), ✗ with the failing dims otherwise, — when the path exists in no dim.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings

START, END = "<!-- deploy-table:start -->", "<!-- deploy-table:end -->"
HEADERS = {
    "channels_last": "channels-last", "autocast_bf16": "autocast bf16", "double": "float64", "half": "float16",
    "compile": "compile (fullgraph)", "export": "torch.export (dyn. N, H, W)", "onnx": "ONNX → onnxruntime (dyn. N)",
    "jit_trace": "jit.trace", "unbatched": "unbatched", "empty_batch": "N = 0", "dtype_message": "dtype message",
    "weight_norm": "weight_norm", "spectral_norm": "spectral_norm",
}


def run() -> str:
    from convzoo.deploy import checks

    results: dict[str, dict[str, list[tuple[int, str]]]] = {}
    notes: dict[str, str] = {}
    for name, dim in checks.cases():
        for path, check in checks.PATHS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    note = check(name, dim)
                    outcome = "ok"
                    if note:
                        notes[f"{name}/{HEADERS[path]}"] = note
                except checks.NotApplicable:
                    outcome = "n/a"
                except Exception as error:  # noqa: BLE001 - a failing path is a result here
                    outcome = "fail"
                    print(f"{name} {dim}-D {path}: {type(error).__name__}: {str(error).splitlines()[:1]}",
                          file=sys.stderr)
            results.setdefault(name, {}).setdefault(path, []).append((dim, outcome))
    lines = ["| family | " + " | ".join(HEADERS[p] for p in checks.PATHS) + " |",
             "|---|" + "---|" * len(checks.PATHS)]
    for name, paths in results.items():
        cells = []
        for path in checks.PATHS:
            outcomes = paths[path]
            failed = [f"{d}-D" for d, o in outcomes if o == "fail"]
            if failed:
                cells.append("✗ " + ", ".join(failed))
            elif all(o == "n/a" for _, o in outcomes):
                cells.append("—")
            else:
                cells.append("✓")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, note in sorted(notes.items()):
        lines.append(f"\n{key}: {note}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="PAGE", help="replace the table between the deploy-table markers")
    args = parser.parse_args()
    table = run()
    if not args.write:
        print(table)
        return
    with open(args.write, encoding="utf-8") as f:
        text = f.read()
    if START not in text or END not in text:
        sys.exit(f"error: --write {args.write!r} has no {START} ... {END} markers")
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{table}\n{END}", text, flags=re.S)
    with open(args.write, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote the table into {args.write}")


if __name__ == "__main__":
    main()
