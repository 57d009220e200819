"""Build CLIP's tokenizer files (vocab.json + merges.txt) from OpenAI's BPE merge list.

    pip download --no-deps open-clip-torch -d /tmp/oc && unzip /tmp/oc/*.whl 'open_clip/*.gz' -d /tmp/oc
    python tools/build_clip_vocab.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz nodegraph/builtin/clip_tokenizer

The vocabulary is the 256 byte symbols, the same with `</w>`, one token per merge (lines 1..48894 of the file)
and the two specials: 49,408 ids, so "a photo of a cat" → [49406, 320, 1125, 539, 320, 2368, 49407].
"""
import gzip, json, sys
src, out = sys.argv[1], sys.argv[2]

def byte_symbols():
    # GPT-2/CLIP byte-level alphabet: printable latin-1 bytes stand for themselves, the rest are shifted
    # past 255 so that every byte has a visible, whitespace-free symbol.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    # CLIP's vocabulary lists the printable bytes first, then the shifted ones, in byte order.
    return [table[b] for b in keep] + [table[b] for b in range(256) if b not in keep]

lines = gzip.open(src).read().decode("utf-8").split("\n")
merges = lines[1:48894 + 1]
syms = byte_symbols()
vocab = syms + [s + "</w>" for s in syms] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
assert len(vocab) == 49408 and len(set(vocab)) == 49408
json.dump({t: i for i, t in enumerate(vocab)}, open(f"{out}/vocab.json", "w"), ensure_ascii=False)
open(f"{out}/merges.txt", "w").write("#version: 0.2\n" + "\n".join(merges) + "\n")
