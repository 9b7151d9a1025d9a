/* erp.core._pqw: the Parquet files of one ingest commit, encoded in C (optional;
 * erp.core.pqwrite falls back to pyarrow's writer).
 *
 * A commit writes one small file per (tenant, date): thousands of files of a
 * few hundred rows. pyarrow's writer spends about 1 ms on each whatever its
 * size: it sets up a writer, 25 column writers and their encoders per file,
 * and creates a zstd context for every compressed page (on virtual machines
 * that context's creation alone costs ~7 us: it runs `cpuid`, which traps to
 * the hypervisor). This module encodes every file of a commit in one call,
 * without the GIL, with one zstd context for all of them.
 *
 * The files it writes are plain Parquet (format 2.x, the subset pyarrow writes
 * for the same table): one row group; per column one optional data page (v1,
 * definition levels RLE/bit-packed) after an optional dictionary page; values
 * PLAIN or RLE_DICTIONARY (indices and levels in RLE or bit-packed runs); zstd per column as asked; min/max statistics (with
 * null counts) for the columns asked; STRING and TIMESTAMP(MICROS, UTC)
 * logical types; column orders TYPE_ORDER.
 *
 * ``encode(spec, chunks, spans, bounds, level, created_by, seed)``:
 *   spec    one (name: bytes, kind: int, flags: int) per column; kind 0 string
 *           (Arrow utf8, int32 offsets), 1 timestamp[us, UTC], 2 float64, 3 bool,
 *           4 fixed_size_binary(16) (the dedup index's keys);
 *           flags 1 dictionary, 2 zstd, 4 statistics
 *   chunks  per chunk, per column (validity or None, offsets or None, data,
 *           offset, length): the Arrow buffers of one array (offset = the
 *           array's offset into its buffers, length = its number of rows)
 *   spans   int64 triples (chunk, first row, rows), back to back (bytes-like)
 *   bounds  int64 (files + 1): file i is spans[bounds[i]:bounds[i+1]], in order
 *   level   the zstd level
 *   created_by  the footer's writer name, e.g. "erp version 0.1.0"
 *   seed    seeds the dictionaries' hash (values come from senders: random per
 *           process, so nobody can make them collide on purpose)
 * returns (data: bytes, sizes: list[int]): the files back to back.
 *
 * zstd is the system's libzstd (libzstd.so.1), loaded when the module is
 * imported; the import fails without it and the pyarrow writer is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "vendor/xxhash.h"

/* --- libzstd, loaded at import --------------------------------------------- */

typedef void ZSTD_CCtx;
static ZSTD_CCtx *(*zstd_create)(void);
static size_t (*zstd_free)(ZSTD_CCtx *);
static size_t (*zstd_compress)(ZSTD_CCtx *, void *, size_t, const void *, size_t, int);
static size_t (*zstd_bound)(size_t);
static unsigned (*zstd_is_error)(size_t);
static const char *(*zstd_error_name)(size_t);

static int load_zstd(void) {
    const char *names[] = {"libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib", NULL};
    void *h = NULL;
    for (int i = 0; names[i] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        PyErr_SetString(PyExc_ImportError, "libzstd (libzstd.so.1) was not found");
        return -1;
    }
    zstd_create = (ZSTD_CCtx * (*)(void)) dlsym(h, "ZSTD_createCCtx");
    zstd_free = (size_t(*)(ZSTD_CCtx *))dlsym(h, "ZSTD_freeCCtx");
    zstd_compress = (size_t(*)(ZSTD_CCtx *, void *, size_t, const void *, size_t, int))dlsym(h, "ZSTD_compressCCtx");
    zstd_bound = (size_t(*)(size_t))dlsym(h, "ZSTD_compressBound");
    zstd_is_error = (unsigned (*)(size_t))dlsym(h, "ZSTD_isError");
    zstd_error_name = (const char *(*)(size_t))dlsym(h, "ZSTD_getErrorName");
    if (!zstd_create || !zstd_free || !zstd_compress || !zstd_bound || !zstd_is_error || !zstd_error_name) {
        PyErr_SetString(PyExc_ImportError, "libzstd lacks ZSTD_compressCCtx and friends");
        return -1;
    }
    return 0;
}

/* --- growable byte buffers ---------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static int reserve(buf_t *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

#define NEED(b, k) do { if (reserve((b), (k))) return -1; } while (0)

static int put(buf_t *b, const void *src, size_t k) {
    NEED(b, k);
    if (k) memcpy(b->p + b->n, src, k);
    b->n += k;
    return 0;
}

static int put_u8(buf_t *b, uint8_t v) { return put(b, &v, 1); }

static int put_u32le(buf_t *b, uint32_t v) {
    uint8_t x[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};
    return put(b, x, 4);
}

static int put_varint(buf_t *b, uint64_t v) {
    uint8_t x[10];
    int k = 0;
    while (v >= 0x80) {
        x[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    x[k++] = (uint8_t)v;
    return put(b, x, k);
}

/* --- Thrift compact protocol ----------------------------------------------------- */

enum { T_TRUE = 1, T_FALSE = 2, T_I16 = 4, T_I32 = 5, T_I64 = 6, T_BINARY = 8, T_LIST = 9, T_STRUCT = 12 };

static int t_field(buf_t *b, int *last, int id, int type) {
    int delta = id - *last;
    *last = id;
    if (delta > 0 && delta <= 15) return put_u8(b, (uint8_t)(delta << 4 | type));
    if (put_u8(b, (uint8_t)type)) return -1;
    return put_varint(b, (uint64_t)((id << 1) ^ (id >> 31)));
}

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static int t_i32(buf_t *b, int *last, int id, int32_t v) {
    return t_field(b, last, id, T_I32) || put_varint(b, zigzag(v));
}

static int t_i64(buf_t *b, int *last, int id, int64_t v) {
    return t_field(b, last, id, T_I64) || put_varint(b, zigzag(v));
}

static int t_bin(buf_t *b, int *last, int id, const void *p, size_t n) {
    return t_field(b, last, id, T_BINARY) || put_varint(b, n) || put(b, p, n);
}

static int t_bool(buf_t *b, int *last, int id, int v) { return t_field(b, last, id, v ? T_TRUE : T_FALSE); }

static int t_list(buf_t *b, int type, size_t n) {
    if (n < 15) return put_u8(b, (uint8_t)(n << 4 | type));
    return put_u8(b, (uint8_t)(0xF0 | type)) || put_varint(b, n);
}

static int t_stop(buf_t *b) { return put_u8(b, 0); }

/* --- inputs -------------------------------------------------------------------- */

enum { K_STRING = 0, K_TIMESTAMP = 1, K_DOUBLE = 2, K_BOOL = 3, K_FIXED16 = 4 };
/* bytes per value of the fixed-width kinds */
static const int WIDTH[] = {0, 8, 8, 0, 16};
/* rows and offsets of an array, at most (so that 16 * (offset + length) fits) */
#define MAX_ROWS ((int64_t)1 << 56)
/* min/max values longer than this are left out of the statistics (as pyarrow does) */
#define MAX_STAT_BYTES 4096
enum { F_DICT = 1, F_ZSTD = 2, F_STATS = 4 };

typedef struct {
    const uint8_t *valid; /* NULL: no nulls */
    const int32_t *offs;  /* strings */
    const uint8_t *data;
    Py_ssize_t data_len;
    int64_t offset, length;
} arr_t;

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    int kind, flags;
} colspec_t;

static inline int is_valid(const arr_t *a, int64_t i) {
    if (!a->valid) return 1;
    int64_t j = a->offset + i;
    return (a->valid[j >> 3] >> (j & 7)) & 1;
}

/* --- per column chunk ------------------------------------------------------------ */

typedef struct {
    int64_t start, data_page, dict_page; /* offsets in the file; dict_page -1 if none */
    int64_t uncompressed, compressed;    /* with page headers */
    int64_t num_values, nulls;
    int dict, zstd, has_stats;
    buf_t min, max;
} colmeta_t;

typedef struct {
    buf_t values, zbuf, dict_vals;
    uint32_t *idx, *levels;
    size_t idx_cap, levels_cap;
    uint64_t *slots; /* (hash high bits << 32) | (index + 1); 0 empty */
    uint32_t *dict_off, *dict_len;
    const uint8_t **dict_ptr;
    size_t slots_cap, ptr_cap, len_cap;
    uint64_t seed;
    ZSTD_CCtx *zctx;
    int level;
    char err[200];
} ctx_t;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* RLE/bit-packed hybrid of `n` values of `width` bits (<= 32): a value
 * repeated 8 times or more is one RLE run; the rest go in bit-packed runs of
 * at most 63 groups of 8 (as parquet-cpp writes them; only the last group of
 * all may be padded). */
static int put_hybrid(buf_t *b, const uint32_t *v, size_t n, int width) {
    size_t i = 0, vbytes = (size_t)(width + 7) / 8;
    while (i < n) {
        size_t r = 1;
        while (i + r < n && v[i + r] == v[i]) r++;
        if (r >= 8) {
            if (put_varint(b, (uint64_t)r << 1)) return -1;
            uint32_t x = v[i];
            for (size_t k = 0; k < vbytes; k++, x >>= 8)
                if (put_u8(b, (uint8_t)x)) return -1;
            i += r;
            continue;
        }
        /* a literal run: groups of 8 until a long repeat starts at a group's end */
        size_t groups = 0, j = i;
        while (j < n && groups < 63) {
            groups++;
            j += 8;
            if (j >= n) break;
            size_t q = 1;
            while (j + q < n && q < 8 && v[j + q] == v[j]) q++;
            if (q >= 8) break;
        }
        if (put_varint(b, (groups << 1) | 1)) return -1;
        size_t bytes = groups * (size_t)width;
        NEED(b, bytes);
        uint8_t *out = b->p + b->n;
        uint64_t acc = 0;
        int have = 0;
        size_t o = 0;
        for (size_t k = 0; k < groups * 8; k++) {
            uint64_t x = (i + k < n) ? v[i + k] : 0;
            acc |= x << have;
            have += width;
            while (have >= 8) {
                out[o++] = (uint8_t)acc;
                acc >>= 8;
                have -= 8;
            }
        }
        b->n += bytes;
        i = i + groups * 8 < n ? i + groups * 8 : n;
    }
    return 0;
}

/* Definition levels of the rows of `spans` (bit width 1), with their 4-byte length. */
static int put_def_levels(ctx_t *c, buf_t *b, arr_t **arrs, const int64_t *sp, size_t nsp, int col,
                          int64_t rows, int64_t nulls) {
    size_t at = b->n;
    if (put_u32le(b, 0)) return -1;
    if (nulls == 0 || nulls == rows) {
        if (put_varint(b, (uint64_t)rows << 1) || put_u8(b, nulls == 0 ? 1 : 0)) return -1;
    } else {
        if (grow((void **)&c->levels, &c->levels_cap, (size_t)rows, sizeof(uint32_t))) return -1;
        size_t k = 0;
        for (size_t s = 0; s < nsp; s++) {
            const arr_t *a = &arrs[sp[3 * s]][col];
            int64_t first = sp[3 * s + 1], n = sp[3 * s + 2];
            for (int64_t i = first; i < first + n; i++) c->levels[k++] = (uint32_t)is_valid(a, i);
        }
        if (put_hybrid(b, c->levels, k, 1)) return -1;
    }
    uint32_t len = (uint32_t)(b->n - at - 4);
    memcpy(b->p + at, &len, 4); /* little-endian hosts only (checked at import) */
    return 0;
}

static int bytes_less(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    size_t m = na < nb ? na : nb;
    int r = memcmp(a, b, m);
    return r < 0 || (r == 0 && na < nb);
}

static int set_bytes(buf_t *b, const void *p, size_t n) {
    b->n = 0;
    return put(b, p, n);
}

/* A page: header (Thrift) then payload, compressed when asked. */
static int put_page(ctx_t *c, buf_t *file, colmeta_t *m, int dict_page, int64_t num_values, int encoding,
                    const buf_t *payload) {
    const uint8_t *body = payload->p;
    size_t body_n = payload->n;
    if (payload->n > INT32_MAX) {
        snprintf(c->err, sizeof c->err, "a page of %zu bytes is over Parquet's 2 GiB page limit", payload->n);
        return -1;
    }
    if (m->zstd) {
        size_t bound = zstd_bound(payload->n);
        c->zbuf.n = 0;
        if (reserve(&c->zbuf, bound)) return -1;
        size_t z = zstd_compress(c->zctx, c->zbuf.p, bound, payload->p, payload->n, c->level);
        if (zstd_is_error(z)) {
            snprintf(c->err, sizeof c->err, "zstd: %s", zstd_error_name(z));
            return -1;
        }
        body = c->zbuf.p;
        body_n = z;
    }
    size_t at = file->n;
    int last = 0;
    if (t_i32(file, &last, 1, dict_page ? 2 : 0) || t_i32(file, &last, 2, (int32_t)payload->n) ||
        t_i32(file, &last, 3, (int32_t)body_n))
        return -1;
    int sub = 0;
    if (dict_page) {
        if (t_field(file, &last, 7, T_STRUCT) || t_i32(file, &sub, 1, (int32_t)num_values) ||
            t_i32(file, &sub, 2, 0 /* PLAIN */) || t_stop(file))
            return -1;
    } else {
        if (t_field(file, &last, 5, T_STRUCT) || t_i32(file, &sub, 1, (int32_t)num_values) ||
            t_i32(file, &sub, 2, encoding) || t_i32(file, &sub, 3, 3 /* RLE */) ||
            t_i32(file, &sub, 4, 3 /* RLE */) || t_stop(file))
            return -1;
    }
    if (t_stop(file)) return -1;
    size_t header = file->n - at;
    if (put(file, body, body_n)) return -1;
    m->uncompressed += (int64_t)(header + payload->n);
    m->compressed += (int64_t)(header + body_n);
    return 0;
}

static int encode_column(ctx_t *c, buf_t *file, int64_t file_start, arr_t **arrs, const int64_t *sp, size_t nsp,
                         int col, const colspec_t *spec, colmeta_t *m) {
    int64_t rows = 0, nulls = 0;
    for (size_t s = 0; s < nsp; s++) {
        const arr_t *a = &arrs[sp[3 * s]][col];
        int64_t first = sp[3 * s + 1], n = sp[3 * s + 2];
        rows += n;
        if (a->valid)
            for (int64_t i = 0; i < n; i++) nulls += !is_valid(a, first + i);
    }
    m->num_values = rows;
    m->nulls = nulls;
    m->start = file->n - file_start;
    m->dict_page = -1;
    m->uncompressed = m->compressed = 0;
    m->zstd = (spec->flags & F_ZSTD) != 0;
    m->dict = spec->kind != K_BOOL && (spec->flags & F_DICT) && nulls < rows;
    m->has_stats = 0;
    int want_stats = (spec->flags & F_STATS) != 0;
    buf_t *v = &c->values;
    v->n = 0;
    int64_t nonnull = rows - nulls;
    const uint8_t *minp = NULL, *maxp = NULL;
    size_t minn = 0, maxn = 0;
    int64_t imin = 0, imax = 0;
    int have = 0;

    if (m->dict) {
        size_t cap = 16;
        while (cap < (size_t)nonnull * 2) cap *= 2;
        if (grow((void **)&c->slots, &c->slots_cap, cap, sizeof(uint64_t)) ||
            grow((void **)&c->idx, &c->idx_cap, (size_t)nonnull, sizeof(uint32_t)) ||
            grow((void **)&c->dict_ptr, &c->ptr_cap, (size_t)nonnull, sizeof(void *)) ||
            grow((void **)&c->dict_len, &c->len_cap, (size_t)nonnull, sizeof(uint32_t)))
            return -1;
        memset(c->slots, 0, cap * sizeof(uint64_t));
        size_t mask = cap - 1, ndict = 0, k = 0;
        for (size_t s = 0; s < nsp; s++) {
            const arr_t *a = &arrs[sp[3 * s]][col];
            int64_t first = sp[3 * s + 1], n = sp[3 * s + 2];
            for (int64_t i = first; i < first + n; i++) {
                if (!is_valid(a, i)) continue;
                const uint8_t *p;
                size_t len;
                if (spec->kind == K_STRING) {
                    int64_t lo = a->offs[a->offset + i], hi = a->offs[a->offset + i + 1];
                    if (lo < 0 || hi < lo || hi > a->data_len) {
                        snprintf(c->err, sizeof c->err, "column %s: a string's offsets are outside its data",
                                 spec->name);
                        return -1;
                    }
                    p = a->data + lo;
                    len = (size_t)(hi - lo);
                } else {
                    len = (size_t)WIDTH[spec->kind];
                    p = a->data + (a->offset + i) * (int64_t)len;
                }
                uint64_t h = XXH3_64bits_withSeed(p, len, c->seed);
                size_t at = (size_t)h & mask;
                uint32_t tag = (uint32_t)(h >> 32);
                for (;;) {
                    uint64_t e = c->slots[at];
                    if (e == 0) {
                        c->dict_ptr[ndict] = p;
                        c->dict_len[ndict] = (uint32_t)len;
                        c->slots[at] = ((uint64_t)tag << 32) | (uint64_t)(ndict + 1);
                        c->idx[k++] = (uint32_t)ndict++;
                        if (want_stats && spec->kind == K_STRING) {
                            if (!have || bytes_less(p, len, minp, minn)) minp = p, minn = len;
                            if (!have || bytes_less(maxp, maxn, p, len)) maxp = p, maxn = len;
                            have = 1;
                        } else if (want_stats && spec->kind == K_TIMESTAMP) {
                            int64_t x;
                            memcpy(&x, p, 8);
                            if (!have || x < imin) imin = x;
                            if (!have || x > imax) imax = x;
                            have = 1;
                        }
                        break;
                    }
                    uint32_t j = (uint32_t)(e & 0xFFFFFFFFu) - 1;
                    if ((uint32_t)(e >> 32) == tag && c->dict_len[j] == len && memcmp(c->dict_ptr[j], p, len) == 0) {
                        c->idx[k++] = j;
                        break;
                    }
                    at = (at + 1) & mask;
                }
            }
        }
        /* dictionary page: the distinct values, PLAIN */
        buf_t *d = &c->dict_vals;
        d->n = 0;
        for (size_t j = 0; j < ndict; j++)
            if ((spec->kind == K_STRING && put_u32le(d, c->dict_len[j])) || put(d, c->dict_ptr[j], c->dict_len[j]))
                return -1;
        m->dict_page = file->n - file_start;
        if (put_page(c, file, m, 1, (int64_t)ndict, 0, d)) return -1;
        /* data page: definition levels, then bit width and the indices */
        int width = 1;
        while (width < 32 && ((size_t)1 << width) < ndict) width++;
        if (put_def_levels(c, v, arrs, sp, nsp, col, rows, nulls) || put_u8(v, (uint8_t)width) ||
            put_hybrid(v, c->idx, k, width))
            return -1;
        m->data_page = file->n - file_start;
        if (put_page(c, file, m, 0, rows, 8 /* RLE_DICTIONARY */, v)) return -1;
    } else {
        if (put_def_levels(c, v, arrs, sp, nsp, col, rows, nulls)) return -1;
        if (spec->kind == K_BOOL) {
            size_t nbytes = (size_t)(nonnull + 7) / 8, at = v->n, k = 0;
            NEED(v, nbytes);
            memset(v->p + at, 0, nbytes);
            for (size_t s = 0; s < nsp; s++) {
                const arr_t *a = &arrs[sp[3 * s]][col];
                int64_t first = sp[3 * s + 1], n = sp[3 * s + 2];
                for (int64_t i = first; i < first + n; i++) {
                    if (!is_valid(a, i)) continue;
                    int64_t j = a->offset + i;
                    if ((a->data[j >> 3] >> (j & 7)) & 1) v->p[at + (k >> 3)] |= (uint8_t)(1 << (k & 7));
                    k++;
                }
            }
            v->n += nbytes;
        } else {
            for (size_t s = 0; s < nsp; s++) {
                const arr_t *a = &arrs[sp[3 * s]][col];
                int64_t first = sp[3 * s + 1], n = sp[3 * s + 2];
                if (spec->kind == K_STRING) {
                    for (int64_t i = first; i < first + n; i++) {
                        if (!is_valid(a, i)) continue;
                        int64_t lo = a->offs[a->offset + i], hi = a->offs[a->offset + i + 1];
                        if (lo < 0 || hi < lo || hi > a->data_len) {
                            snprintf(c->err, sizeof c->err, "column %s: a string's offsets are outside its data",
                                     spec->name);
                            return -1;
                        }
                        const uint8_t *p = a->data + lo;
                        size_t len = (size_t)(hi - lo);
                        if (put_u32le(v, (uint32_t)len) || put(v, p, len)) return -1;
                        if (want_stats) {
                            if (!have || bytes_less(p, len, minp, minn)) minp = p, minn = len;
                            if (!have || bytes_less(maxp, maxn, p, len)) maxp = p, maxn = len;
                            have = 1;
                        }
                    }
                } else { /* fixed-width values: timestamps (int64), doubles, 16-byte keys */
                    const int w = WIDTH[spec->kind];
                    const uint8_t *base = a->data + (a->offset + first) * w;
                    if (!a->valid) {
                        if (put(v, base, (size_t)n * w)) return -1;
                    } else {
                        for (int64_t i = 0; i < n; i++)
                            if (is_valid(a, first + i) && put(v, base + i * w, w)) return -1;
                    }
                    if (want_stats && spec->kind == K_TIMESTAMP) {
                        const int64_t *x = (const int64_t *)base;
                        for (int64_t i = 0; i < n; i++) {
                            if (a->valid && !is_valid(a, first + i)) continue;
                            if (!have || x[i] < imin) imin = x[i];
                            if (!have || x[i] > imax) imax = x[i];
                            have = 1;
                        }
                    }
                }
            }
        }
        m->data_page = file->n - file_start;
        if (put_page(c, file, m, 0, rows, 0 /* PLAIN */, v)) return -1;
    }
    if (want_stats && (spec->kind == K_STRING || spec->kind == K_TIMESTAMP)) {
        m->has_stats = 1;
        if (have && spec->kind == K_STRING && (minn > MAX_STAT_BYTES || maxn > MAX_STAT_BYTES)) {
            have = 0; /* the null count only */
        } else if (have && spec->kind == K_STRING) {
            if (set_bytes(&m->min, minp, minn) || set_bytes(&m->max, maxp, maxn)) return -1;
        } else if (have) {
            if (set_bytes(&m->min, &imin, 8) || set_bytes(&m->max, &imax, 8)) return -1;
        } else {
            m->min.n = m->max.n = 0;
        }
        m->has_stats = have ? 2 : 1; /* 1: null count only */
    }
    return 0;
}

static const int PARQUET_TYPE[] = {6 /* BYTE_ARRAY */, 2 /* INT64 */, 5 /* DOUBLE */, 0 /* BOOLEAN */,
                                   7 /* FIXED_LEN_BYTE_ARRAY */};

static int put_footer(buf_t *file, int ncols, const colspec_t *spec, colmeta_t *meta,
                      int64_t rows, const char *created_by) {
    size_t at = file->n;
    int last = 0, sub, sub2, sub3;
    if (t_i32(file, &last, 1, 2)) return -1;
    /* schema: the root, then one optional leaf per column */
    if (t_field(file, &last, 2, T_LIST) || t_list(file, T_STRUCT, (size_t)ncols + 1)) return -1;
    sub = 0;
    if (t_bin(file, &sub, 4, "schema", 6) || t_i32(file, &sub, 5, ncols) || t_stop(file)) return -1;
    for (int i = 0; i < ncols; i++) {
        sub = 0;
        if (t_i32(file, &sub, 1, PARQUET_TYPE[spec[i].kind]) ||
            (spec[i].kind == K_FIXED16 && t_i32(file, &sub, 2, 16 /* type_length */)) ||
            t_i32(file, &sub, 3, 1 /* OPTIONAL */) ||
            t_bin(file, &sub, 4, spec[i].name, (size_t)spec[i].name_len))
            return -1;
        if (spec[i].kind == K_STRING) {
            sub2 = 0;
            if (t_i32(file, &sub, 6, 0 /* UTF8 */) || t_field(file, &sub, 10, T_STRUCT) ||
                t_field(file, &sub2, 1, T_STRUCT) || t_stop(file) || t_stop(file))
                return -1;
        } else if (spec[i].kind == K_TIMESTAMP) {
            sub2 = 0;
            sub3 = 0;
            if (t_i32(file, &sub, 6, 10 /* TIMESTAMP_MICROS */) || t_field(file, &sub, 10, T_STRUCT) ||
                t_field(file, &sub2, 8, T_STRUCT) || t_bool(file, &sub3, 1, 1) ||
                t_field(file, &sub3, 2, T_STRUCT) || put_u8(file, 0x20 | T_STRUCT) /* MICROS: field 2 */ ||
                t_stop(file) /* MicroSeconds */ || t_stop(file) /* TimeUnit */ || t_stop(file) /* Timestamp */ ||
                t_stop(file) /* LogicalType */)
                return -1;
        }
        if (t_stop(file)) return -1;
    }
    if (t_i64(file, &last, 3, rows)) return -1;
    /* one row group */
    if (t_field(file, &last, 4, T_LIST) || t_list(file, T_STRUCT, 1)) return -1;
    int rg = 0;
    int64_t total_unc = 0, total_comp = 0;
    if (t_field(file, &rg, 1, T_LIST) || t_list(file, T_STRUCT, (size_t)ncols)) return -1;
    for (int i = 0; i < ncols; i++) {
        colmeta_t *m = &meta[i];
        total_unc += m->uncompressed;
        total_comp += m->compressed;
        int cc = 0, md = 0;
        if (t_i64(file, &cc, 2, m->start) || t_field(file, &cc, 3, T_STRUCT)) return -1;
        if (t_i32(file, &md, 1, PARQUET_TYPE[spec[i].kind]) || t_field(file, &md, 2, T_LIST)) return -1;
        if (m->dict) {
            if (t_list(file, T_I32, 3) || put_varint(file, zigzag(0)) || put_varint(file, zigzag(3)) ||
                put_varint(file, zigzag(8)))
                return -1;
        } else if (t_list(file, T_I32, 2) || put_varint(file, zigzag(0)) || put_varint(file, zigzag(3))) {
            return -1;
        }
        if (t_field(file, &md, 3, T_LIST) || t_list(file, T_BINARY, 1) || put_varint(file, (uint64_t)spec[i].name_len) ||
            put(file, spec[i].name, (size_t)spec[i].name_len))
            return -1;
        if (t_i32(file, &md, 4, m->zstd ? 6 : 0) || t_i64(file, &md, 5, m->num_values) ||
            t_i64(file, &md, 6, m->uncompressed) || t_i64(file, &md, 7, m->compressed) ||
            t_i64(file, &md, 9, m->data_page))
            return -1;
        if (m->dict_page >= 0 && t_i64(file, &md, 11, m->dict_page)) return -1;
        if (m->has_stats) {
            int st = 0;
            if (t_field(file, &md, 12, T_STRUCT) || t_i64(file, &st, 3, m->nulls)) return -1;
            if (m->has_stats == 2 && (t_bin(file, &st, 5, m->max.p, m->max.n) || t_bin(file, &st, 6, m->min.p, m->min.n)))
                return -1;
            if (t_stop(file)) return -1;
        }
        if (t_stop(file) /* ColumnMetaData */ || t_stop(file) /* ColumnChunk */) return -1;
    }
    if (t_i64(file, &rg, 2, total_unc) || t_i64(file, &rg, 3, rows) || t_i64(file, &rg, 5, meta[0].start) ||
        t_i64(file, &rg, 6, total_comp) || t_field(file, &rg, 7, T_I16) || put_varint(file, 0) || t_stop(file))
        return -1;
    if (t_bin(file, &last, 6, created_by, strlen(created_by))) return -1;
    if (t_field(file, &last, 7, T_LIST) || t_list(file, T_STRUCT, (size_t)ncols)) return -1;
    for (int i = 0; i < ncols; i++)
        if (put_u8(file, 0x10 | T_STRUCT) || t_stop(file) /* TypeDefinedOrder */ || t_stop(file) /* ColumnOrder */)
            return -1;
    if (t_stop(file)) return -1;
    return put_u32le(file, (uint32_t)(file->n - at)) || put(file, "PAR1", 4);
}

/* --- the Python entry point -------------------------------------------------------- */

static int get_buf(PyObject *o, Py_buffer *b, int *held) {
    if (PyObject_GetBuffer(o, b, PyBUF_SIMPLE) < 0) return -1;
    (*held)++;
    return 0;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *spec_o, *chunks_o;
    Py_buffer spans_b, bounds_b;
    int level;
    const char *created_by;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OOy*y*isK", &spec_o, &chunks_o, &spans_b, &bounds_b, &level, &created_by, &seed))
        return NULL;
    PyObject *result = NULL, *spec_fast = NULL, *chunks_fast = NULL;
    colspec_t *spec = NULL;
    arr_t **arrs = NULL, *arr_store = NULL;
    Py_buffer *held = NULL;
    int nheld = 0, ncols = 0;
    Py_ssize_t nchunks = 0;
    colmeta_t *meta = NULL;
    buf_t out = {0};
    ctx_t c = {0};
    size_t *sizes = NULL;
    int failed = 0;

    spec_fast = PySequence_Fast(spec_o, "spec must be a sequence");
    chunks_fast = spec_fast ? PySequence_Fast(chunks_o, "chunks must be a sequence") : NULL;
    if (!chunks_fast) goto done;
    ncols = (int)PySequence_Fast_GET_SIZE(spec_fast);
    nchunks = PySequence_Fast_GET_SIZE(chunks_fast);
    if (ncols <= 0) {
        PyErr_SetString(PyExc_ValueError, "encode: no columns");
        goto done;
    }
    spec = calloc((size_t)ncols, sizeof *spec);
    meta = calloc((size_t)ncols, sizeof *meta);
    arrs = calloc((size_t)nchunks + 1, sizeof *arrs);
    arr_store = calloc((size_t)(nchunks * ncols) + 1, sizeof *arr_store);
    held = calloc((size_t)(nchunks * ncols * 3) + 1, sizeof *held);
    if (!spec || !meta || !arrs || !arr_store || !held) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < ncols; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(spec_fast, i);
        if (!PyArg_ParseTuple(t, "y#ii", &spec[i].name, &spec[i].name_len, &spec[i].kind, &spec[i].flags)) goto done;
        if (spec[i].kind < 0 || spec[i].kind > K_FIXED16) {
            PyErr_SetString(PyExc_ValueError, "encode: unknown column kind");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < nchunks; k++) {
        PyObject *cols = PySequence_Fast_GET_ITEM(chunks_fast, k);
        if (!PyTuple_Check(cols) && !PyList_Check(cols)) {
            PyErr_SetString(PyExc_TypeError, "encode: each chunk must be a list of columns");
            goto done;
        }
        if (PySequence_Size(cols) != ncols) {
            PyErr_SetString(PyExc_ValueError, "encode: a chunk's column count differs from the spec");
            goto done;
        }
        arrs[k] = arr_store + k * ncols;
        for (int i = 0; i < ncols; i++) {
            PyObject *t = PySequence_GetItem(cols, i);
            if (!t) goto done;
            PyObject *vo, *oo, *dobj;
            long long off, len;
            int ok = PyArg_ParseTuple(t, "OOOLL", &vo, &oo, &dobj, &off, &len);
            Py_DECREF(t);
            if (!ok) goto done;
            arr_t *a = &arrs[k][i];
            a->offset = off;
            a->length = len;
            /* bounded so that the buffer sizes below cannot overflow */
            if (off < 0 || len < 0 || off > MAX_ROWS || len > MAX_ROWS - off) {
                PyErr_SetString(PyExc_ValueError, "encode: offset or length out of range");
                goto done;
            }
            int kind = spec[i].kind;
            if (vo != Py_None) {
                Py_buffer *b = &held[nheld];
                if (get_buf(vo, b, &nheld)) goto done;
                if (b->len < (off + len + 7) / 8) {
                    PyErr_SetString(PyExc_ValueError, "encode: a validity buffer is too short");
                    goto done;
                }
                a->valid = b->buf;
            }
            if (kind == K_STRING) {
                Py_buffer *b = &held[nheld];
                if (oo == Py_None || get_buf(oo, b, &nheld)) {
                    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "encode: a string column needs offsets");
                    goto done;
                }
                if (b->len < (off + len + 1) * 4) {
                    PyErr_SetString(PyExc_ValueError, "encode: an offsets buffer is too short");
                    goto done;
                }
                a->offs = b->buf;
            }
            if (dobj == Py_None) {
                if (len > 0 && kind != K_STRING) {
                    PyErr_SetString(PyExc_ValueError, "encode: a column has no data buffer");
                    goto done;
                }
                a->data = (const uint8_t *)"";
                a->data_len = 0;
            } else {
                Py_buffer *b = &held[nheld];
                if (get_buf(dobj, b, &nheld)) goto done;
                a->data = b->buf;
                a->data_len = b->len;
                Py_ssize_t need = kind == K_BOOL ? (off + len + 7) / 8 : kind == K_STRING ? 0 : (off + len) * WIDTH[kind];
                if (b->len < need) {
                    PyErr_SetString(PyExc_ValueError, "encode: a data buffer is too short");
                    goto done;
                }
            }
        }
    }
    const int64_t *sp = spans_b.buf, *bd = bounds_b.buf;
    size_t nspans = (size_t)spans_b.len / (3 * sizeof(int64_t));
    size_t nbounds = (size_t)bounds_b.len / sizeof(int64_t);
    if (spans_b.len % (3 * sizeof(int64_t)) || bounds_b.len % sizeof(int64_t) || nbounds < 1) {
        PyErr_SetString(PyExc_ValueError, "encode: spans must be int64 triples and bounds int64 values");
        goto done;
    }
    for (size_t s = 0; s < nspans; s++) {
        int64_t k = sp[3 * s], first = sp[3 * s + 1], n = sp[3 * s + 2];
        if (k < 0 || k >= nchunks || first < 0 || n < 0 || first > arrs[k][0].length ||
            n > arrs[k][0].length - first) {
            PyErr_SetString(PyExc_ValueError, "encode: a span is outside its chunk");
            goto done;
        }
        for (int i = 1; i < ncols; i++)
            if (arrs[k][i].length != arrs[k][0].length) {
                PyErr_SetString(PyExc_ValueError, "encode: a chunk's columns differ in length");
                goto done;
            }
    }
    for (size_t f = 0; f + 1 < nbounds; f++)
        if (bd[f] < 0 || bd[f + 1] < bd[f] || (size_t)bd[f + 1] > nspans) {
            PyErr_SetString(PyExc_ValueError, "encode: bounds must rise within the spans");
            goto done;
        }
    size_t nfiles = nbounds - 1;
    sizes = calloc(nfiles + 1, sizeof *sizes);
    if (!sizes) {
        PyErr_NoMemory();
        goto done;
    }
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    c.level = level;
    c.seed = seed;
    c.zctx = zstd_create();
    if (!c.zctx) nomem = 1;
    for (size_t f = 0; f < nfiles && !failed && !nomem; f++) {
        int64_t start = (int64_t)out.n, rows = 0;
        const int64_t *fsp = sp + 3 * bd[f];
        size_t fn = (size_t)(bd[f + 1] - bd[f]);
        for (size_t s = 0; s < fn; s++) rows += fsp[3 * s + 2];
        if (put(&out, "PAR1", 4)) {
            nomem = 1;
            break;
        }
        for (int i = 0; i < ncols; i++) {
            if (encode_column(&c, &out, start, arrs, fsp, fn, i, &spec[i], &meta[i])) {
                if (c.err[0]) failed = 1; else nomem = 1;
                break;
            }
        }
        if (!failed && !nomem && put_footer(&out, ncols, spec, meta, rows, created_by)) nomem = 1;
        sizes[f] = out.n - (size_t)start;
    }
    if (c.zctx) zstd_free(c.zctx);
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    if (failed) {
        PyErr_SetString(PyExc_ValueError, c.err);
        goto done;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)out.p, (Py_ssize_t)out.n);
    PyObject *lst = data ? PyList_New((Py_ssize_t)nfiles) : NULL;
    if (!lst) {
        Py_XDECREF(data);
        goto done;
    }
    for (size_t f = 0; f < nfiles; f++) {
        PyObject *n = PyLong_FromSize_t(sizes[f]);
        if (!n) {
            Py_DECREF(data);
            Py_DECREF(lst);
            goto done;
        }
        PyList_SET_ITEM(lst, (Py_ssize_t)f, n);
    }
    result = PyTuple_Pack(2, data, lst);
    Py_DECREF(data);
    Py_DECREF(lst);
done:
    for (int i = 0; i < nheld; i++) PyBuffer_Release(&held[i]);
    PyBuffer_Release(&spans_b);
    PyBuffer_Release(&bounds_b);
    Py_XDECREF(spec_fast);
    Py_XDECREF(chunks_fast);
    if (meta)
        for (int i = 0; i < ncols; i++) {
            free(meta[i].min.p);
            free(meta[i].max.p);
        }
    free(meta);
    free(spec);
    free(arrs);
    free(arr_store);
    free(held);
    free(sizes);
    free(out.p);
    free(c.values.p);
    free(c.zbuf.p);
    free(c.dict_vals.p);
    free(c.idx);
    free(c.levels);
    free(c.slots);
    free(c.dict_ptr);
    free(c.dict_len);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "encode(spec, chunks, spans, bounds, level, created_by, seed) -> (bytes, sizes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pqw", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pqw(void) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "erp.core._pqw writes little-endian Parquet on little-endian hosts only");
        return NULL;
    }
    if (load_zstd()) return NULL;
    return PyModule_Create(&module);
}
