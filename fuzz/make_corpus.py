#!/usr/bin/env python3
"""Writes the small seed corpus of the fuzz targets (fuzz/corpus/<format>/): valid files that reach every branch
of the parsers (all dtypes, metadata value types, nested arrays, alignment, block types). Run from anywhere."""
import os
import struct

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def save(fmt, name, data):
    d = os.path.join(here, fmt)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- npy
def npy(descr, shape, data, major=1):
    sh = "(" + "".join(f"{s}, " for s in shape).rstrip(" ") + ")" if len(shape) != 1 else f"({shape[0]},)"
    if not shape:
        sh = "()"
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, sh)
    prefix = 10 if major == 1 else 12
    h += " " * ((64 - (prefix + len(h) + 1) % 64) % 64) + "\n"
    ln = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + ln + h.encode() + data


save("npy", "f4_2x3", npy("<f4", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)))
save("npy", "f2_4", npy("<f2", [4], b"\x00\x3c" * 4))
save("npy", "i1_scalar", npy("|i1", [], b"\x05"))
save("npy", "u1_v2", npy("|u1", [3], b"\x01\x02\x03", major=2))
save("npy", "f8_v3", npy("<f8", [1, 1], struct.pack("<d", 2.5), major=3))
save("npy", "b1_empty", npy("|b1", [0, 2], b""))


# ---------------------------------------------------------------- safetensors
def st(entries, meta=None):
    parts, off, data = [], 0, b""
    if meta:
        parts.append('"__metadata__":{' + ",".join(f'"{k}":"{v}"' for k, v in meta.items()) + "}")
    for name, dtype, shape, raw in entries:
        parts.append(f'"{name}":{{"dtype":"{dtype}","shape":[{",".join(map(str, shape))}],'
                     f'"data_offsets":[{off},{off + len(raw)}]}}')
        off += len(raw)
        data += raw
    h = ("{" + ",".join(parts) + "}").encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


save("safetensors", "two", st([("w", "F16", [2, 2], b"\x00\x3c" * 4), ("b", "F32", [2], struct.pack("<2f", 1, 2))],
                              {"format": "pt"}))
save("safetensors", "dtypes", st([(d, d, [2], b"\x01" * (2 * s)) for d, s in
                                  [("BOOL", 1), ("U8", 1), ("I8", 1), ("F8_E5M2", 1), ("F8_E4M3", 1), ("I16", 2),
                                   ("U16", 2), ("BF16", 2), ("I32", 4), ("U32", 4), ("F64", 8), ("I64", 8),
                                   ("U64", 8)]]))
save("safetensors", "empty", st([]))
save("safetensors", "escaped", st([("a\\u00e9\\n", "F32", [], struct.pack("<f", 1))]))


# ---------------------------------------------------------------- gguf
def gs(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def gv(t, v):
    if t == 8:
        return gs(v)
    if t == 9:
        et, vals = v
        return struct.pack("<IQ", et, len(vals)) + b"".join(gv(et, x) for x in vals)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gs(k) + struct.pack("<I", t) + gv(t, v)
    off, blobs = 0, []
    for name, ne, typ, raw in tensors:
        out += gs(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", typ, off)
        pad = (alignment - len(raw) % alignment) % alignment
        blobs.append(raw + b"\x00" * pad)
        off += len(raw) + pad
    out += b"\x00" * ((alignment - len(out) % alignment) % alignment)
    return out + b"".join(blobs)


every = [("general.architecture", 8, "llama"), ("u8", 0, 1), ("i8", 1, -1), ("u16", 2, 2), ("i16", 3, -2),
         ("u32", 4, 3), ("i32", 5, -3), ("f32", 6, 0.5), ("bool", 7, 1), ("u64", 10, 4), ("i64", 11, -4),
         ("f64", 12, 0.25), ("arr", 9, (8, ["a", "bc"])), ("nested", 9, (9, [(5, [1, 2]), (9, [(7, [0])])]))]
save("gguf", "every_type", gguf(every, [("w", [4, 2], 0, struct.pack("<8f", *range(8))),
                                        ("h", [3], 1, b"\x00\x3c" * 3)]))
save("gguf", "q8_0", gguf([("general.alignment", 4, 64)], [("q", [32, 1], 8, b"\x00\x38" + bytes(range(32)))], 64))
save("gguf", "q4_k", gguf([], [("k", [256], 12, bytes(144)), ("n", [2], 0, bytes(8))]))
save("gguf", "plain_types", gguf([], [("i8", [4], 24, bytes(4)), ("i32", [2], 26, bytes(8)),
                                      ("bf16", [2], 30, b"\x80\x3f" * 2), ("f64", [1], 28, bytes(8))]))
save("gguf", "empty", gguf([], []))


# ---------------------------------------------------------------- llama2.c (legacy version 0: no magic, exact size)
def llama2c(dim, hidden, layers, heads, kv_heads, vocab, seq):
    kv = dim // heads * kv_heads
    v = abs(vocab)
    n = v * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + dim + seq * (dim // heads)
    if vocab < 0:
        n += v * dim
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq) + struct.pack(f"<{n}f", *range(n))


save("llama2c", "shared", llama2c(4, 6, 1, 2, 1, 3, 2))
save("llama2c", "separate_gqa", llama2c(8, 4, 2, 4, 2, -5, 1))
