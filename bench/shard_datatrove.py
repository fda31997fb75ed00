"""datatrove's Megatron tokenizer step over a folder of jsonl.zst documents; run by bench/shard.py in datatrove's
own venv (bench/.cache/datatrove-venv). Prints one JSON line: wall seconds and tokens written.

    python shard_datatrove.py CORPUS_DIR OUT_DIR TOKENIZER_JSON EOS_TOKEN WORKERS
"""

import glob
import json
import os
import sys
import time

if __name__ == "__main__":  # datatrove's executor re-imports __main__ in its workers
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens.megatron_tokenizer import MegatronDocumentTokenizer

    corpus, out, tokenizer, eos, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    files = sorted(glob.glob(f"{corpus}/*.jsonl.zst"))
    t = time.perf_counter()
    LocalPipelineExecutor(pipeline=[JsonlReader(corpus, glob_pattern="*.jsonl.zst", compression="zstd"),
                                    MegatronDocumentTokenizer(f"{out}/megatron", tokenizer_name_or_path=tokenizer,
                                                              eos_token=eos)],
                          tasks=len(files), workers=workers, logging_dir=f"{out}/logs").run()
    wall = time.perf_counter() - t
    dtype_size = {True: 4, False: 2}
    tokens = 0
    for idx in glob.glob(f"{out}/megatron/*.idx"):
        with open(idx, "rb") as f:
            head = f.read(34)
        size = 2 if head[17] == 8 else 4
        tokens += os.path.getsize(idx[:-4] + ".bin") // size
    print(json.dumps({"wall_s": wall, "tokens": tokens, "files": len(files)}))
