"""Record benchmark-suite runs in the shipped models' sidecars (their `suite` entry), which the model zoo page,
the README, `sharpkd models`, the web app's Models tab and its API read. Run the suite on every shipped model
first (in one run, or in several over different families, whose results are merged), then:

    sharpkd evaluate --suite --data ../shared/data --count 200 \\
        --models teacher,teacher_seed,student,student_lk,student_seed --out reports/suite
    python scripts/zoo_suite.py reports/suite/suite.json --write
    python scripts/zoo_page.py --write
"""
from __future__ import annotations

import argparse
import json
import sys

from sharpkd.fileio import write_text
from sharpkd.models.weights import shipped_names, shipped_weights_path, sidecar_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("suite", nargs="+", help="suite.json of `sharpkd evaluate --suite` runs (same --count and --seed)")
parser.add_argument("--write", action="store_true", help="write each shipped model's rows into its sidecar")
args = parser.parse_args()

results = [json.loads(open(f).read()) for f in args.suite]
if len({(r["count"], r["size"], r["seed"]) for r in results}) > 1:
    sys.exit("the runs differ in --count, --size or --seed")


def row(r: dict) -> dict:
    return {"ssim": round(r["ssim"], 4), "psnr": round(r["psnr"], 2)}


for name in dict.fromkeys(n for r in results for n in r["models"]):
    if name not in shipped_names():
        print(f"{name}: not a shipped model, skipped")
        continue
    entry = {"commands": [r.get("command", "sharpkd evaluate --suite") for r in results if name in r["models"]],
             "count": results[0]["count"], "size": results[0]["size"], "seed": results[0]["seed"], "datasets": {}}
    for r in results:
        for ds, d in r["datasets"].items() if name in r["models"] else ():
            entry["datasets"].setdefault(ds, {}).update({
                f: {**row(v["rows"][name]), "input": row(v["rows"]["input"]), "unsharp": row(v["rows"]["unsharp mask"]),
                    "pairs": v["pairs"]}
                for f, v in d["families"].items()})
    faces = entry["datasets"].get("faces", {})
    print(f"{name}: " + ", ".join(f"{f} {v['ssim']:.4f}/{v['psnr']:.2f}" for f, v in faces.items()))
    if args.write:
        side = sidecar_path(shipped_weights_path(name))
        meta = json.loads(side.read_text())
        meta["suite"] = entry
        write_text(side, json.dumps(meta, indent=2) + "\n")
        print(f"wrote {side.name}")
