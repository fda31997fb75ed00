"""url_filter: FineWeb's URL filter (inherited from RefinedWeb) as signals. Scoring only: `filter` decides, and
can do so before extraction, since only the URL is needed (the recipe drops these pages unextracted).

Per document, from ``metadata.url`` (null signals without one):

* ``domain`` / ``subdomain`` (0 or 1): the URL's registered domain (``example.co.uk``) / its full host name
  (``www.example.co.uk``) is on the domain block list; the Public Suffix List is tldextract's bundled snapshot
  (never fetched), private suffixes (``blogspot.com``) not counted as suffixes;
* ``url`` (0 or 1): the URL, exactly as written, is on the URL block list;
* ``hard_words``: how many banned words are words of the URL (split at every character that is not an ASCII
  letter or digit, case kept: ``/porn`` counts, ``/PORN`` does not);
* ``soft_words``: how many "soft" banned words are (FineWeb drops at two);
* ``subwords``: how many banned subwords occur in the URL once lower-cased with everything but letters and digits
  removed.

The lists are datatrove 0.10.1's (their provenance is recorded in this folder's SOURCES.md): they ship in the
``datatrove`` wheel, which `make install` installs without dependencies for its data only (curate never imports
it), as it does with the wheels that carry models. Word lists are normalised as datatrove does (lower-case, letters
and digits only; lines starting with ``#`` are comments). The 4.6 million domains are kept as sorted 64-bit hashes
(`domain_hash`) in a file built once per machine (about 3 s) under ``$CURATE_CACHE/url_filter/`` and memory-mapped
by every worker: loading takes milliseconds instead of the seconds and hundreds of MB a set of strings costs per
process. Two different domains share a hash with probability about 1e-12 per lookup. ``extra_*`` lists add to the
bundled ones (``use_bundled_lists: false``: only them).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import tarfile

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.files import cache_dir, file_sha256
from curate.operator import BatchOperator, Params, set_column

_SEPARATORS = re.compile(r"[^a-zA-Z0-9]+")
LISTS_TAR = "url_filterblacklistsv0_3_0.tar.gz"
SIGNALS = ("domain", "subdomain", "url", "hard_words", "soft_words", "subwords")


class UrlFilterParams(Params):
    use_bundled_lists: bool = Field(True, description="Use the bundled lists (datatrove 0.10.1's).")
    extra_domains: tuple[str, ...] = Field((), description="More registered domains or host names to block.")
    extra_urls: tuple[str, ...] = Field((), description="More exact URLs to block.")
    extra_banned_words: tuple[str, ...] = Field((), description="More banned URL words.")
    extra_soft_banned_words: tuple[str, ...] = Field((), description="More soft banned URL words.")
    extra_banned_subwords: tuple[str, ...] = Field((), description="More banned URL subwords.")


def assets_dir() -> str:
    """The datatrove wheel's assets folder (found without importing datatrove)."""
    spec = importlib.util.find_spec("datatrove")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the URL block lists ship in the datatrove==0.10.1 wheel, which is not installed: "
                                "`pip install --no-deps datatrove==0.10.1` (make install does; curate uses its data "
                                "files only), or set url_filter.use_bundled_lists: false")
    path = os.path.join(list(spec.submodule_search_locations)[0], "assets")
    if not os.path.exists(os.path.join(path, LISTS_TAR)):
        raise FileNotFoundError(f"{LISTS_TAR} not found in {path}: install datatrove==0.10.1 (its data)")
    return path


def normalize(word: str) -> str:
    return _SEPARATORS.sub("", word).lower()


def word_list(lines, normalized: bool = True) -> set[str]:
    """A list file's entries: lines starting with # are comments; entries normalised (words) or stripped."""
    return {normalize(x) if normalized else x.strip() for x in lines if x and x[0] != "#"}


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit reaches every output bit."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


_M64 = (1 << 64) - 1


def _mix_int(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def hash_one(domain: str) -> int:
    """`domain_hash` of one domain in plain Python: a lookup per URL, where numpy's per-call overhead would cost
    more than the hash (equal to the vectorised hash: tested)."""
    raw = domain.encode()
    n = len(raw)
    h = _mix_int(n)
    padded = raw + b"\0" * (-n % 8 if n else 8)
    for k in range(0, len(padded), 8):
        h = _mix_int(h ^ int.from_bytes(padded[k:k + 8], "little"))
    return h


def domain_hash(domains) -> np.ndarray:
    """Sorted unique 64-bit hashes of the domains (str or UTF-8 bytes)."""
    raw = [d.encode() if isinstance(d, str) else d for d in domains]
    lengths = np.array([len(d) for d in raw], np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return _hash_spans(np.frombuffer(b"".join(raw) or b"\0", np.uint8), starts, lengths)


def _hash_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sorted unique 64-bit hashes of the byte strings ``data[start:start + length]``: the length, then each
    8-byte little-endian word (the last one zero-padded) xor-ed in and mixed (splitmix64's finaliser). Vectorised
    over every string of one length at a time: the 4.6 million bundled domains in about a second, where hashlib
    called per string took 14."""
    if len(lengths) == 0:
        return np.zeros(0, np.uint64)
    order = np.argsort(lengths, kind="stable")
    bounds = np.searchsorted(lengths[order], np.arange(int(lengths.max()) + 2))
    out = np.empty(len(lengths), np.uint64)
    with np.errstate(over="ignore"):
        for n in range(len(bounds) - 1):
            rows = order[bounds[n]:bounds[n + 1]]
            if not len(rows):
                continue
            padded = np.zeros((len(rows), max((n + 7) // 8 * 8, 8)), np.uint8)
            padded[:, :n] = data[starts[rows][:, None] + np.arange(n)]
            words = padded.view("<u8")
            h = _mix(np.full(len(rows), np.uint64(n), np.uint64))
            for k in range(words.shape[1]):
                h = _mix(h ^ words[:, k])
            out[rows] = h
    out.sort()  # then unique by neighbours: numpy 2's np.unique hashes, several times slower here
    return out[np.concatenate(([True], out[1:] != out[:-1]))]


_SPACE = np.zeros(256, bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True


def list_spans(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list file's entries as (bytes, starts, lengths), read as datatrove reads it (``x.strip() for x in file if
    x[0] != "#"``): lines starting with ``#`` are comments, entries stripped of ASCII white space. Vectorised: the
    domain list has 4.6 million lines."""
    data = np.frombuffer(raw, np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if len(data) and data[-1] != ord("\n"):
        ends = np.append(ends, len(data))  # a last line without its newline
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
    keep = (starts >= len(data)) | (data[np.minimum(starts, max(len(data) - 1, 0))] != ord("#"))
    starts, ends = starts[keep], ends[keep].astype(np.int64)
    padded = np.append(data, np.uint8(0))  # reads at an empty line's start stay in bounds
    for _ in range(64):  # strip: a few passes cover any real file; both loops stop at once when nothing moves
        moved = (starts < ends) & _SPACE[padded[starts]]
        if not moved.any():
            break
        starts = starts + moved
    for _ in range(64):
        moved = (ends > starts) & _SPACE[padded[np.maximum(ends - 1, 0)]]
        if not moved.any():
            break
        ends = ends - moved
    return data, starts, ends - starts


@functools.cache
def bundled() -> tuple[np.ndarray, frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(domain hashes, urls, banned words, soft banned words, banned subwords) of the bundled lists, per process;
    the domain hashes built once per machine (`$CURATE_CACHE/url_filter/<sha256 of the tar>.npy`)."""
    assets = assets_dir()
    tar_path = os.path.join(assets, LISTS_TAR)
    folder = cache_dir("url_filter")
    key = f"{file_sha256(tar_path)[:16]}-h2"  # h2: the hash of `domain_hash` (a new one gets a new file)
    npy, urls_file = folder / f"domains-{key}.npy", folder / f"urls-{key}.json"
    if not (npy.exists() and urls_file.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            domains = _hash_spans(*list_spans(tar.extractfile(members["domains"]).read()))
            data, starts, lengths = list_spans(tar.extractfile(members["urls"]).read())
            urls = {data[a:a + n].tobytes().decode("utf-8") for a, n in zip(starts.tolist(), lengths.tolist())}
        tmp = folder / f".tmp-{os.getpid()}-{npy.name}"  # ends in .npy: np.save keeps the name
        np.save(tmp, domains)
        os.replace(tmp, npy)
        tmp_urls = folder / f".tmp-{os.getpid()}-{urls_file.name}"
        tmp_urls.write_text(json.dumps(sorted(urls)))
        os.replace(tmp_urls, urls_file)
    hashes = np.load(npy, mmap_mode="r")
    urls = frozenset(json.loads(urls_file.read_text()))

    def words(name: str) -> frozenset[str]:
        with open(os.path.join(assets, name), encoding="utf-8") as f:
            return frozenset(word_list(f))

    return hashes, urls, words("banned_words.txt"), words("soft_banned_words.txt"), words("banned_subwords.txt")


class UrlFilter(BatchOperator):
    """FineWeb's URL block list and banned-word signals (datatrove's lists and rules)."""

    name = "url_filter"
    Params = UrlFilterParams
    outputs = {f"url_filter__blocklist__{k}": pa.int64() for k in SIGNALS}

    def setup(self) -> None:
        import tldextract

        p: UrlFilterParams = self.params  # type: ignore[assignment]
        # the bundled Public Suffix List snapshot: no fetch, no cache on disk, the same answer on every machine
        self.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)
        hashes, urls, banned, soft, sub = bundled() if p.use_bundled_lists else (
            np.zeros(0, np.uint64), frozenset(), frozenset(), frozenset(), frozenset())
        self.hashes = hashes
        self.extra_domains = frozenset(x.strip() for x in p.extra_domains)
        self.urls = urls | {x.strip() for x in p.extra_urls}
        self.banned = banned | word_list(p.extra_banned_words)
        self.soft = soft | word_list(p.extra_soft_banned_words)
        self.sub = sorted(sub | word_list(p.extra_banned_subwords))

    def preflight(self) -> None:
        self.setup()

    def listed(self, domain: str) -> bool:
        if domain in self.extra_domains:
            return True
        if not len(self.hashes):
            return False
        h = np.uint64(hash_one(domain))
        i = int(np.searchsorted(self.hashes, h))
        return i < len(self.hashes) and self.hashes[i] == h

    def signals(self, url: str) -> dict[str, int]:
        info = self.extract(url)
        words = set(_SEPARATORS.split(url))
        flat = normalize(url)
        return {"domain": int(self.listed(info.top_domain_under_public_suffix)),
                "subdomain": int(self.listed(info.fqdn)),
                "url": int(url in self.urls),
                "hard_words": len(self.banned & words),
                "soft_words": len(self.soft & words),
                "subwords": sum(1 for w in self.sub if w in flat)}

    def process(self, table: pa.Table) -> pa.Table:
        cols: dict[str, list] = {k: [] for k in SIGNALS}
        for meta in table.column("metadata").to_pylist():
            try:
                url = json.loads(meta).get("url") if meta else None
            except (ValueError, AttributeError):
                url = None
            found = self.signals(url) if isinstance(url, str) and url else {}
            for k, col in cols.items():
                col.append(found.get(k))
        for k, col in cols.items():
            table = set_column(table, f"url_filter__blocklist__{k}", pa.array(col, pa.int64()))
        return table
