"""Memory and CPU of decoding one big input image, per kind of file.

    python -m bench.decode_bench [--side 8000x5000]

Each kind is decoded by `flux_worker.inputs.intake.decode` in a fresh process, which reports
its peak RSS growth (VmHWM) and its CPU time: what one decode costs a worker, whatever else runs
on the machine. Kinds: a plain RGBA PNG (a screenshot, a diagram), an RGB PNG of noise (a photo
saved as PNG, the worst case for zlib), a JPEG photo, a lossless WebP, a GIF.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from harness.big_uploads import measure_decode, plain_png

MiB = 2**20


def samples(width: int, height: int) -> dict[str, bytes]:
    """The files to decode, made once (Pillow needs the full image to write most formats)."""
    files = {"PNG, plain RGBA": plain_png(width, height, (200, 40, 40, 255))}
    noise = Image.effect_noise((width, height), 64).convert("RGB")
    for name, fmt, options in (("PNG, RGB noise", "PNG", {"compress_level": 1}),
                               ("JPEG, q90", "JPEG", {"quality": 90}),
                               ("WebP, lossless", "WEBP", {"lossless": True, "method": 0}),
                               ("GIF", "GIF", {})):
        out = io.BytesIO()
        noise.save(out, fmt, **options)
        files[name] = out.getvalue()
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", default="8000x5000")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.side.split("x"))
    print("| file | bytes | decoded to | peak RSS growth | CPU |")
    print("|---|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in samples(width, height).items():
            path = Path(tmp) / "image"
            path.write_bytes(data)
            try:
                got = measure_decode(path)
            except subprocess.CalledProcessError as exc:
                # A WebP above 4096x4096 is refused (it can only be decoded whole).
                reason = exc.stderr.strip().splitlines()[-1] if exc.stderr else "failed"
                print(f"| {name} | {len(data):,} | refused: {reason[:120]} | | |", flush=True)
                continue
            print(f"| {name} | {len(data):,} | {got.width}x{got.height} | "
                  f"{got.grown / MiB:.0f} MiB | {got.cpu:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
