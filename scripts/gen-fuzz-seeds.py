#!/usr/bin/env python3
# Writes the fuzz seed corpora, tests/fuzz/corpus/NAME/ (run by hand from the repository root, like
# gen-unicode-tables.py; nothing in build, test or run needs Python). Seeds are small: hand-made
# files of each format (valid ones, so the fuzzer starts deep inside the readers) and the small
# files, or the header parts of bigger ones, of ../shared/testdata (SDRENDER_TESTDATA).
# The PyTorch checkpoints are pickled here with stand-ins for torch's globals (no torch needed).
import os, sys, json, struct, zlib, zipfile, io, pickle, types, collections, time
time.time = lambda: 1700000000.0  # fixed ZIP timestamps: the same seeds on every run
T = os.environ.get('SDRENDER_TESTDATA', '../shared/testdata')
C = 'tests/fuzz/corpus'
def out(name, fname, data):
    d = os.path.join(C, name); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), 'wb') as f: f.write(data)

# ---------- safetensors
def st(tensors, meta=None):
    hdr = {}; data = b''
    for name, dt, shape, raw in tensors:
        hdr[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    if meta: hdr['__metadata__'] = meta
    h = json.dumps(hdr).encode()
    return struct.pack('<Q', len(h)) + h + data
out('safetensors', 'small_f32', st([('a.weight', 'F32', [2, 3], bytes(range(24))), ('b', 'F16', [4], bytes(8))], {'format': 'pt'}))
out('safetensors', 'dtypes', st([('x_' + d, d, [2], bytes(2 * s)) for d, s in [('F64', 8), ('BF16', 2), ('I64', 8), ('I32', 4), ('I16', 2), ('I8', 1), ('U8', 1), ('BOOL', 1)]]))
out('safetensors', 'scalar_empty', st([('s', 'F32', [], bytes(4)), ('e', 'F32', [0, 3], b'')]))
for src in ['golden/randn.safetensors', 'a1111/lora_tiny_kohya.safetensors', 'metrics/prdc.safetensors']:
    b = open(os.path.join(T, src), 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    out('safetensors', 'header_of_' + os.path.basename(src), b[:8 + n])  # header only: data area truncated

# ---------- pickles (a fake torch for Pickler to name)
torch = types.ModuleType('torch'); utils = types.ModuleType('torch._utils')
sys.modules['torch'] = torch; sys.modules['torch._utils'] = utils
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = 'torch._utils'; utils._rebuild_tensor_v2 = _rebuild_tensor_v2
class FloatStorage: pass
FloatStorage.__module__ = 'torch'; torch.FloatStorage = FloatStorage
class HalfStorage: pass
HalfStorage.__module__ = 'torch'; torch.HalfStorage = HalfStorage
class Storage:
    def __init__(s, key, typ, numel, data): s.key, s.typ, s.numel, s.data = key, typ, numel, data
class Tensor:
    def __init__(s, storage, off, shape): s.storage, s.off, s.shape = storage, off, shape
    def __reduce__(s):
        stride = []; acc = 1
        for d in reversed(s.shape): stride.insert(0, acc); acc *= d
        return (_rebuild_tensor_v2, (s.storage, s.off, tuple(s.shape), tuple(stride), False, collections.OrderedDict()))
class P(pickle.Pickler):
    legacy = False
    def persistent_id(self, o):
        if isinstance(o, Storage):
            if self.legacy: return ('storage', o.typ, o.key, 'cpu', o.numel, None)
            return ('storage', o.typ, o.key, 'cpu', o.numel)
        return None
def dumps(obj, legacy=False, proto=2):
    f = io.BytesIO(); p = P(f, protocol=proto); p.legacy = legacy; p.dump(obj); return f.getvalue()
s0 = Storage('0', FloatStorage, 6, struct.pack('<6f', *range(6)))
s1 = Storage('1', HalfStorage, 4, bytes(8))
sd = collections.OrderedDict([('model.a.weight', Tensor(s0, 0, [2, 3])), ('model.b', Tensor(s1, 0, [4])), ('model.c', Tensor(s0, 2, [2, 2]))])
obj = {'state_dict': sd, 'global_step': 7, 'epoch': 1.5, 'name': 'x', 'nested': [None, True, (1, 2), {3, 4}, b'by']}
pk = dumps(obj)
out('pickle', 'ckpt_dict_p2', pk)
out('pickle', 'plain_p4', pickle.dumps({'a': [1, 2.5, 'str', b'bytes', None, True, (1, (2, 3)), frozenset([1]), 2**70, -5]}, protocol=4))
out('pickle', 'plain_p0', pickle.dumps([1, 'x', {'k': 2.0}], protocol=0))
out('pickle', 'plain_p5', pickle.dumps(collections.OrderedDict(a=1), protocol=5))
# zip checkpoint
def zipckpt(obj, storages, compress=zipfile.ZIP_STORED):
    f = io.BytesIO()
    with zipfile.ZipFile(f, 'w', compress) as z:
        z.writestr('archive/data.pkl', dumps(obj))
        for s in storages: z.writestr('archive/data/' + s.key, s.data)
        z.writestr('archive/version', '3\n')
    return f.getvalue()
out('ckpt', 'zip_stored', zipckpt(obj, [s0, s1]))
out('ckpt', 'zip_deflated', zipckpt(sd, [s0, s1], zipfile.ZIP_DEFLATED))
# legacy
MAGIC = 0x1950a86a20f9469cfc6c
leg = dumps(MAGIC, True) + dumps(1001, True) + dumps({'protocol_version': 1001, 'little_endian': True, 'type_sizes': {'short': 2, 'int': 4, 'long': 4}}, True)
leg += dumps(obj, True) + dumps(['0', '1'], True)
for s in [s0, s1]: leg += struct.pack('<q', s.numel) + s.data
out('ckpt', 'legacy', leg)
out('pickle', 'legacy_stream', leg)
# ---------- zip
f = io.BytesIO()
with zipfile.ZipFile(f, 'w') as z:
    z.writestr('a.txt', 'hello'); z.writestr(zipfile.ZipInfo('dir/'), b'')
    z.writestr('b.bin', bytes(range(256)) * 4, compress_type=zipfile.ZIP_DEFLATED)
out('zip', 'stored_deflated', f.getvalue())
out('zip', 'ckpt_zip', zipckpt(obj, [s0, s1]))
f = io.BytesIO()
with zipfile.ZipFile(f, 'w', allowZip64=True) as z:
    with z.open('big', 'w', force_zip64=True) as m: m.write(b'z' * 100)
out('zip', 'zip64', f.getvalue())
# ---------- npy / npz
def npy(descr, shape, raw, fortran=False, ver=1):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, 'True' if fortran else 'False', repr(tuple(shape)))
    pre = 10 if ver == 1 else 12
    pad = 64 - (pre + len(h) + 1) % 64
    h = h + ' ' * pad + '\n'
    hl = struct.pack('<H', len(h)) if ver == 1 else struct.pack('<I', len(h))
    return b'\x93NUMPY' + bytes([ver, 0]) + hl + h.encode() + raw
def npz(arrays, compress=zipfile.ZIP_STORED):
    f = io.BytesIO()
    with zipfile.ZipFile(f, 'w', compress) as z:
        for n, a in arrays: z.writestr(n + '.npy', a)
    return f.getvalue()
D = 4
mu = npy('<f8', [D], struct.pack('<4d', 1, 2, 3, 4)); sig = npy('<f8', [D, D], bytes(8 * D * D))
out('npz', 'fid_stats', npz([('mu', mu), ('sigma', sig)]))
out('npz', 'fid_stats_compressed', npz([('mu', mu), ('sigma', sig), ('features', npy('<f4', [2, D], bytes(32))), ('n', npy('<i8', [], bytes(8)))], zipfile.ZIP_DEFLATED))
out('npz', 'dtypes', npz([(d, npy(d, [3], bytes(3 * s), ver=2)) for d, s in [('<f2', 2), ('<i2', 2), ('<i4', 4), ('|i1', 1), ('|u1', 1), ('|b1', 1)]]))
out('npz', 'plain_npy', npy('<f4', [2, 2], bytes(16)))
# ---------- png
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
def png(w, h, depth, color, rows, extra=b'', interlace=0, pre=b''):
    raw = b''.join(b'\x00' + r for r in rows)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, color, 0, 0, interlace)) + pre + extra + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
out('png', 'rgb8_text', png(3, 2, 8, 2, [bytes(range(9)), bytes(range(9, 18))], chunk(b'tEXt', b'parameters\x00a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512') + chunk(b'iTXt', b'k\x00\x00\x00\x00\x00caf\xc3\xa9') + chunk(b'zTXt', b'z\x00\x00' + zlib.compress(b'caf\xe9'))))
out('png', 'gray1', png(8, 2, 1, 0, [b'\xa5', b'\x5a']))
out('png', 'gray16', png(2, 2, 16, 0, [b'\x00\x10\x03\xe8', b'\xff\xff\x00\x00']))
out('png', 'rgba16', png(1, 1, 16, 6, [bytes(8)]))
out('png', 'gray_alpha', png(2, 1, 8, 4, [bytes(4)]))
out('png', 'palette_trns', png(2, 2, 4, 3, [b'\x01', b'\x10'], pre=chunk(b'PLTE', bytes(range(6))) + chunk(b'tRNS', b'\x00')))
out('png', 'interlaced_1x1', png(1, 1, 8, 2, [b'\x10\x20\x30'], interlace=1))  # Adam7: 1x1 is pass 1 only
for src in ['golden/pipeline_inpaint_pndm.mask.png', 'golden/pipeline_inpaint_pndm.input.png']:
    out('png', os.path.basename(src), open(os.path.join(T, src), 'rb').read())
# ---------- yaml
for src in ['models/tiny-sd15.yaml']:
    out('yaml', 'tiny-sd15.yaml', open(os.path.join(T, src), 'rb').read())
out('yaml', 'types.yaml', b"a: 1\nb: 1.5e-4\nc: .inf\nd: [yes, no, on, off, null, ~]\ne: 'quoted'\nf:\n  - {x: 1}\n  - - 2\n")
out('yaml', 'anchor.yaml', b"a: &x 1\nb: *x\n")
# ---------- tokenizer prompts
prompts = [b'a photo of a cat', b'A (red:1.3) [dog] BREAK on a \\(beach\\) <lora:tiny:0.8>, 4k, hd', b'caf\xc3\xa9 &amp; \xe2\x80\x9cquotes\xe2\x80\x9d \xef\xac\x81', b'\xff\xfe bad utf8 \xc3', b'((((nested)))) [[x]] (a:b) (x:1.2.3)', b'emoji \xf0\x9f\x98\x80 and \t tabs\n newline']
for i, p in enumerate(prompts): out('tokenizer', 'prompt%d' % i, p)
# ---------- tokenizer files: a consistent small vocabulary from the real files
vocab = json.load(open(os.path.join(T, 'models/tiny-sd15/tokenizer/vocab.json')))
merges = open(os.path.join(T, 'models/tiny-sd15/tokenizer/merges.txt'), encoding='utf-8').read().split('\n')
ms = merges[1:201]
inv = sorted(vocab.items(), key=lambda kv: kv[1])
toks = [k for k, v in inv[:512]] + [a + b for a, b in (m.split(' ') for m in ms)] + ['<|startoftext|>', '<|endoftext|>']
seen = []; [seen.append(t) for t in toks if t not in seen]
v = json.dumps({t: i for i, t in enumerate(seen)}, ensure_ascii=False).encode()
m = ('\n'.join([merges[0]] + ms) + '\n').encode()
sp = open(os.path.join(T, 'models/tiny-sd15/tokenizer/special_tokens_map.json'), 'rb').read()
tc = open(os.path.join(T, 'models/tiny-sd15/tokenizer/tokenizer_config.json'), 'rb').read()
out('tokenizer_files', 'small', v + b'\n%%\n' + m)
out('tokenizer_files', 'small_specials_prompt', v + b'\n%%\n' + m + b'\n%%\n' + sp + b'\n%%\n' + tc + b'\n%%\n' + b'a photo of an astronaut')
out('tokenizer_files', 'tiny', b'{"a</w>": 0, "b</w>": 1, "a": 2, "b": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6}\n%%\n#version: 0.2\na b</w>\n')
# ---------- enqueue (first byte: 0 txt, 1 jsonl, 2 csv; +4 skip_bad)
out('enqueue', 'txt', b'\x00a cat\n\na dog on a beach\n')
out('enqueue', 'jsonl', b'\x01{"prompt": "a cat", "seed": 3, "steps": 10, "cfg_scale": 5.5, "sampler": "euler_a", "width": 64, "height": 64}\n{"caption": "x", "negative_prompt": "y", "karras": true, "clip_skip": 2, "rng": "cuda"}\n\n{"prompt": "u", "task": "txt2img"}\n')
out('enqueue', 'jsonl_bad_skip', b'\x05{"prompt": "a", "steps": "20"}\n{"prompt": 1}\nnot json\n{"prompt": "ok", "sampler": "nope"}\n{"prompt": "ok"}\n')
out('enqueue', 'csv', b'\x02\xef\xbb\xbfprompt,seed,steps,negative_prompt,image_id\n"a, ""quoted"" cat",1,20,,x\nplain,2,,neg,y\r\n"multi\nline",,30,,z\n')
out('enqueue', 'csv_bad', b'\x06caption,width\nx,65\n"unterminated,8\n')
# ---------- a1111 (first byte even: parse; odd: round trip)
out('a1111', 'parse_full', b'\x00a (cat:1.2), <lora:tiny:0.8>\nNegative prompt: blurry, "bad"\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 512x768, Model hash: 6ce0161689, Model: "v1-5, pruned", Denoising strength: 0.75, Clip skip: 2, Eta: 0.5, Original size: 1024x1024, Crop top: 8, Crop left: 16, Target size: 1024x1024, RNG: NV, Noise level: 20, Lora hashes: "tiny: 0123456789ab"')
out('a1111', 'parse_min', b'\x00\nSteps: 1, Size: 8x8')
out('a1111', 'round_trip', b'\x01' + bytes([0, 20, 2, 238, 0, 0, 0, 0, 0, 0, 0, 42, 0, 63, 0, 63, 0, 16, 2, 3, 1, 44, 0, 0]) + b'a cat\nsecond line\n%%\nblurry\n%%\n6ce0161689\n%%\nv1-5, pruned\n%%\ntiny: 0123456789ab, other: ffffffffffff')
out('a1111', 'round_trip_plain', b'\x01' + bytes(24) + b'x')
# ---------- config
for i, comp in enumerate(['unet/config.json', 'vae/config.json', 'text_encoder/config.json', 'scheduler/scheduler_config.json']):
    for model in ['tiny-sd15', 'tiny-sd2']:
        out('config', model + '_' + comp.split('/')[0], bytes([i]) + open(os.path.join(T, 'models', model, comp), 'rb').read())
