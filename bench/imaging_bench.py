"""Micro-benchmark of flux_worker.generation.fitting.fit: CPU per image and peak memory per case.

    .venv/bin/python -m bench.imaging_bench                 # the four cases, 40 images each
    .venv/bin/python -m bench.imaging_bench --filters --encoder
    git show main:flux_worker/generation/fitting.py > /tmp/before.py
    .venv/bin/python -m bench.imaging_bench --module /tmp/before.py   # "before" figures

The input is what the fake Cloudflare answers (harness/fakes/cloudflare/): flux-1-schnell's
1024x1024 JPEG of 150 KB, noisy enough that decoding costs what a real one does, and for the
enlarging case a 512x512 JPEG of 37 KB (a model output smaller than the asked size).

Every case runs in a fresh process that reads the image from a file, so its memory figures start
from a clean interpreter: CPU is `time.process_time()` per image over `--images` calls after one
warm-up; peak memory is the process's high-water mark (VmHWM, reset through /proc/self/clear_refs
where the kernel allows it) minus its resident size before the first call, once with one thread
and once with `--threads` threads fitting at the same time (what a busy gunicorn worker does).
`--module PATH` measures another version of imaging.py (any file with the same `fit`).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
MODEL = "@cf/black-forest-labs/flux-1-schnell"
MiB = 1 << 20

# name -> (source image, width, height)
CASES = {
    "1:1 (1024x1024, as is)": ("large", 1024, 1024),
    "16:9 (crop to 1024x576)": ("large", 1024, 576),
    "3:2 (crop + shrink to 768x512)": ("large", 768, 512),
    "enlarge (512x512 -> 1024x1024)": ("small", 1024, 1024),
}


def make_sources(directory: Path) -> dict[str, Path]:
    """Write the fake's large and small JPEGs into directory."""
    sys.path.insert(0, str(ROOT))
    from harness.fakes.cloudflare import ImageMaker

    files = {"large": ImageMaker(150).image(MODEL, 1024, 1024, "JPEG"),
             "small": ImageMaker(37).image(MODEL, 512, 512, "JPEG")}
    paths = {}
    for name, data in files.items():
        paths[name] = directory / f"{name}.jpg"
        paths[name].write_bytes(data)
    return paths


def load_imaging(module: str | None) -> ModuleType:
    if not module:
        sys.path.insert(0, str(ROOT))
        from flux_worker.generation import fitting as imaging
        return imaging
    spec = importlib.util.spec_from_file_location("imaging_under_test", module)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up while building
    spec.loader.exec_module(mod)
    return mod


def _status(field: str) -> int:
    """A VmXXX line of /proc/self/status in bytes (0 where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")                    # 5: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> None:
    """Run one case in this (fresh) process and print its figures as JSON."""
    imaging = load_imaging(args.module)
    data = Path(args.source).read_bytes()
    width, height = args.size
    threads = args.threads
    out: dict = {}
    if threads == 1:
        _reset_peak()
        base = _status("VmRSS")
        first = imaging.fit(data, width, height)        # the first call also counts for memory
        start, user = time.process_time(), os.times().user
        for _ in range(args.images):
            imaging.fit(data, width, height)
        out["cpu_ms"] = (time.process_time() - start) / args.images * 1000
        out["user_ms"] = (os.times().user - user) / args.images * 1000
        out["bytes"] = len(first.data)
        out["same_bytes"] = first.data is data
    else:
        barrier = threading.Barrier(threads)

        def work() -> None:
            barrier.wait()
            for _ in range(max(2, args.images // threads)):
                imaging.fit(data, width, height)

        _reset_peak()
        base = _status("VmRSS")
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    peak = _status("VmHWM")
    out["peak_mib"] = max(0, peak - base) / MiB if peak else None
    print(json.dumps(out))


def run_case(source: Path, size: tuple[int, int], images: int, threads: int,
             module: str | None) -> dict:
    argv = [sys.executable, "-m", "bench.imaging_bench", "--child", "--source", str(source),
            "--size", str(size[0]), str(size[1]), "--images", str(images),
            "--threads", str(threads)]
    if module:
        argv += ["--module", module]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cases_table(sources: dict[str, Path], images: int, threads: int, module: str | None) -> str:
    lines = ["| case | CPU ms/image (user + system) | output KB | peak MiB, 1 thread | "
             f"peak MiB, {threads} threads |", "|---|---:|---:|---:|---:|"]
    for name, (src, w, h) in CASES.items():
        one = run_case(sources[src], (w, h), images, 1, module)
        many = run_case(sources[src], (w, h), images, threads, module)
        peak1 = "–" if one["peak_mib"] is None else f"{one['peak_mib']:.1f}"
        peakn = "–" if many["peak_mib"] is None else f"{many['peak_mib']:.1f}"
        lines.append(f"| {name} | {one['cpu_ms']:.2f} ({one['user_ms']:.2f} + "
                     f"{max(0.0, one['cpu_ms'] - one['user_ms']):.2f}) | "
                     f"{one['bytes'] / 1024:.0f}{' (same bytes)' if one['same_bytes'] else ''}"
                     f" | {peak1} | {peakn} |")
    return "\n".join(lines)


def _cpu_ms(fn, repeat: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat * 1000


def _psnr(a, b) -> float:
    """Peak signal-to-noise ratio of two RGB images of one size, in dB."""
    import math

    from PIL import ImageChops, ImageStat

    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(ImageStat.Stat(diff).sum2) / (a.width * a.height * 3)
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def filters_table(sources: dict[str, Path], repeat: int) -> str:
    """Cost and fidelity of each Pillow filter for the two resampling cases of the matrix.

    Shrink 1024x683 -> 768x512: PSNR against Lanczos (the sharpest). Enlarge: a 1024x1024
    picture shrunk to 512x512 with Lanczos and enlarged back, PSNR against the original.
    """
    from PIL import Image

    large = Image.open(sources["large"])
    large.load()
    crop = large.crop((0, 171, 1024, 854))
    small = large.resize((512, 512), Image.Resampling.LANCZOS)
    ref = crop.resize((768, 512), Image.Resampling.LANCZOS)
    lines = ["| filter | shrink 1024x683 → 768x512: CPU ms | PSNR vs Lanczos dB | "
             "enlarge 512² → 1024²: CPU ms | PSNR vs original dB |", "|---|---:|---:|---:|---:|"]
    for f in (Image.Resampling.NEAREST, Image.Resampling.BOX, Image.Resampling.BILINEAR,
              Image.Resampling.HAMMING, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS):
        shrink_ms = _cpu_ms(lambda f=f: crop.resize((768, 512), f), repeat)
        enlarge_ms = _cpu_ms(lambda f=f: small.resize((1024, 1024), f), repeat)
        shrunk_psnr = _psnr(crop.resize((768, 512), f), ref)
        back_psnr = _psnr(small.resize((1024, 1024), f), large)
        lines.append(f"| {f.name} | {shrink_ms:.2f} | "
                     f"{'ref' if f == Image.Resampling.LANCZOS else f'{shrunk_psnr:.1f}'} | "
                     f"{enlarge_ms:.2f} | {back_psnr:.1f} |")
    return "\n".join(lines)


def encoder_table(sources: dict[str, Path], repeat: int) -> str:
    """JPEG encoder settings on the 16:9 crop of the model output: CPU and bytes."""
    from PIL import Image

    large = Image.open(sources["large"])
    large.load()
    crop = large.crop((0, 224, 1024, 800))
    crop.load()
    settings = [("quality 80", {"quality": 80}), ("quality 85", {"quality": 85}),
                ("quality 90", {"quality": 90}), ("quality 95", {"quality": 95}),
                ("quality 90, optimize", {"quality": 90, "optimize": True}),
                ("quality 90, progressive", {"quality": 90, "progressive": True}),
                ("quality 90, 4:4:4", {"quality": 90, "subsampling": 0})]
    lines = ["| JPEG setting (1024x576) | CPU ms | KB |", "|---|---:|---:|"]
    for name, options in settings:
        def encode(options=options) -> bytes:
            buf = io.BytesIO()
            crop.save(buf, "JPEG", **options)
            return buf.getvalue()
        lines.append(f"| {name} | {_cpu_ms(encode, repeat):.2f} | {len(encode()) / 1024:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="fits per case (default 40)")
    parser.add_argument("--threads", type=int, default=16,
                        help="threads of the concurrent memory run (default 16)")
    parser.add_argument("--module", default=None, help="another imaging.py to measure")
    parser.add_argument("--filters", action="store_true", help="also compare Pillow's filters")
    parser.add_argument("--encoder", action="store_true", help="also compare JPEG settings")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="imaging-bench-") as tmp:
        sources = make_sources(Path(tmp))
        print(f"imaging.fit, {args.images} images per case"
              + (f", module {args.module}" if args.module else "") + "\n")
        print(cases_table(sources, args.images, args.threads, args.module))
        if args.filters:
            print()
            print(filters_table(sources, max(5, args.images // 2)))
        if args.encoder:
            print()
            print(encoder_table(sources, max(5, args.images // 2)))


if __name__ == "__main__":
    main()
