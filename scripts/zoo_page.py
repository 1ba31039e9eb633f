"""Write the model zoo page (docs/models.md) and the README's table of shipped models from the sidecars, so
that every figure has one source. A test checks both are current.

    python scripts/zoo_page.py --write
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sharpkd.fileio import write_text
from sharpkd.models.zoo import list_models, models_page, readme_table, with_readme_table

ROOT = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--write", action="store_true", help="write docs/models.md and README.md (else: check them)")
args = parser.parse_args()

models = list_models()
page, readme = models_page(models), ROOT / "README.md"
new_readme = with_readme_table(readme.read_text(), readme_table(models))
stale = [p for p, text in ((ROOT / "docs" / "models.md", page), (readme, new_readme))
         if not p.is_file() or p.read_text() != text]
if args.write:
    for p, text in ((ROOT / "docs" / "models.md", page), (readme, new_readme)):
        write_text(p, text)
    print("wrote docs/models.md and README.md's table")
elif stale:
    sys.exit("out of date: " + ", ".join(str(p.relative_to(ROOT)) for p in stale) + " (run with --write)")
