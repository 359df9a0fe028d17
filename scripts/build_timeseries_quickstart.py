"""Rebuild `mambaseq/assets/data/timeseries/macrodata.csv` (the time-series quickstart data) from PyPI `statsmodels`.

    python scripts/build_timeseries_quickstart.py                       # pip download statsmodels (no install)
    python scripts/build_timeseries_quickstart.py --wheel statsmodels-0.15.0-....whl

The CSV is copied byte for byte from the wheel's `statsmodels/datasets/macrodata/macrodata.csv` (US macroeconomic
data 1959Q1-2009Q3, public domain); its sha256 is printed so it can be compared with the README.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "statsmodels/datasets/macrodata/macrodata.csv"
OUTPUT = Path(__file__).resolve().parents[1] / "mambaseq" / "assets" / "data" / "timeseries" / "macrodata.csv"


def download_wheel(folder: Path) -> Path:
    """`pip download statsmodels --no-deps` into `folder`; returns the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "statsmodels", "--no-deps", "--only-binary", ":all:",
                    "-d", str(folder)], check=True)
    wheels = sorted(folder.glob("statsmodels-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no statsmodels wheel in {folder}")
    return wheels[-1]


def extract_csv(wheel: Path, output: Path) -> str:
    """Copy `MEMBER` out of `wheel` to `output`; returns its sha256."""
    with zipfile.ZipFile(wheel) as archive:
        if MEMBER not in archive.namelist():
            raise FileNotFoundError(f"{wheel} has no {MEMBER}: expected a statsmodels wheel that ships its datasets")
        data = archive.read(MEMBER)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a statsmodels wheel already downloaded (default: pip download)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        wheel = args.wheel or download_wheel(Path(folder))
        digest = extract_csv(wheel, args.output)
    print(f"{args.output} from {wheel.name}: sha256 {digest}")


if __name__ == "__main__":
    main()
