"""Write each shipped model's evaluation (`sharpkd evaluate`'s report.json on the degradation preset it was
trained on) into its JSON sidecar.

    python scripts/annotate_sidecars.py seed=reports/faces_seed/report.json
"""
import json
import sys

from sharpkd.models.weights import shipped_names, shipped_weights_path, sidecar_path

reports = dict(arg.split("=", 1) for arg in sys.argv[1:])
for name in shipped_names():
    side = sidecar_path(shipped_weights_path(name))
    if not side.is_file():
        continue
    meta = json.loads(side.read_text())
    preset = meta["data"].get("preset", "seed")
    if preset not in reports:
        continue
    report = json.load(open(reports[preset]))
    rows = {r["method"]: r for r in report["rows"]}
    row, blurry = rows.get(name), rows["Blurry input"]  # report rows are named as in --models
    if row is None:
        continue
    meta["evaluation"] = {"command": f"sharpkd evaluate --data ../shared/data/faces --preset {preset} --models ...",
                          "pairs": report["pairs"], "ssim": round(row["ssim"], 4), "psnr": round(row["psnr"], 2),
                          "mae": round(row["mae"], 4),
                          "blurry_input": {"ssim": round(blurry["ssim"], 4), "psnr": round(blurry["psnr"], 2)}}
    side.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{name} ({preset}): SSIM {row['ssim']:.4f}, PSNR {row['psnr']:.2f} dB")
