/* erp.core._keys: dedup keys in C (optional; erp.core.keys has the same in Python).
 *
 * ``digests(offsets, data)`` hashes each text of an Arrow large_string column
 * (int64 offsets into ``data``) with XXH3-128 and returns the 16-byte canonical
 * digests back to back: the bytes ``xxhash.xxh3_128_digest`` gives, without a
 * Python call per event.
 *
 * A key set is an open-addressing hash table over 16-byte keys held as two
 * uint64 halves, in a caller-owned uint64 buffer of 2 * capacity words
 * (capacity a power of two; an all-zero slot is empty, so the all-zero key is
 * tracked by the caller). Slots are chosen from the key mixed with a per-table
 * random seed: keys are hashes of event ids the senders choose, and without
 * the seed nobody can make them pile up in one run of slots.
 *
 * ``find(table, seed, hi, lo)`` -> bytes, 1 where the key is in the table;
 * ``insert(table, seed, hi, lo)`` -> count of keys that were not there (adds them);
 * ``first_new(table, seed, hi, lo)`` -> bytes, 1 where the key is neither in the
 * table nor earlier in the batch (the table is not changed).
 * The all-zero key is skipped by all three (find/first_new report 0 for it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "vendor/xxhash.h"

static PyObject *digests(PyObject *self, PyObject *args) {
    Py_buffer off, data;
    if (!PyArg_ParseTuple(args, "y*y*", &off, &data)) return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = off.len / (Py_ssize_t)sizeof(int64_t) - 1;
    const int64_t *o = off.buf;
    if (off.len % (Py_ssize_t)sizeof(int64_t) || n < 0) {
        PyErr_SetString(PyExc_ValueError, "digests: offsets must be n + 1 int64 values");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (o[i] < 0 || o[i + 1] < o[i] || o[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "digests: an offset is outside the data");
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, n * 16);
    if (!out) goto done;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *src = data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        XXH128_hash_t h = XXH3_128bits(src + o[i], (size_t)(o[i + 1] - o[i]));
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        memcpy(dst + 16 * i, c.digest, 16);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&off);
    PyBuffer_Release(&data);
    return out;
}

static inline uint64_t slot_of(uint64_t hi, uint64_t lo, uint64_t seed) {
    uint64_t x = hi ^ (lo * 0x9E3779B97F4A7C15ULL) ^ seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* 1 if (hi, lo) is in tab; with insert, puts it in when absent. -1: the table is full. */
static inline int probe(uint64_t *tab, uint64_t mask, uint64_t seed, uint64_t hi, uint64_t lo, int insert) {
    uint64_t at = slot_of(hi, lo, seed) & mask;
    for (uint64_t tries = 0; tries <= mask; tries++) {
        uint64_t *s = tab + 2 * at;
        if (s[0] == hi && s[1] == lo) return 1;
        if (s[0] == 0 && s[1] == 0) {
            if (insert) {
                s[0] = hi;
                s[1] = lo;
            }
            return 0;
        }
        at = (at + 1) & mask;
    }
    return insert ? -1 : 0;
}

typedef struct {
    Py_buffer tab, hi, lo;
    uint64_t seed;
    Py_ssize_t n;
    uint64_t mask;
} Args;

static int parse_args(PyObject *args, Args *a, int writable) {
    unsigned long long seed;
    const char *fmt = writable ? "w*Ky*y*" : "y*Ky*y*";
    if (!PyArg_ParseTuple(args, fmt, &a->tab, &seed, &a->hi, &a->lo)) return -1;
    a->seed = (uint64_t)seed;
    Py_ssize_t slots = a->tab.len / 16;
    a->n = a->hi.len / 8;
    if (a->tab.len % 16 || slots == 0 || (slots & (slots - 1)) || a->hi.len % 8 || a->lo.len != a->hi.len) {
        PyErr_SetString(PyExc_ValueError, "key set: the table must hold a power of two of 16-byte slots "
                                          "and hi/lo must be equal-length uint64 arrays");
        PyBuffer_Release(&a->tab);
        PyBuffer_Release(&a->hi);
        PyBuffer_Release(&a->lo);
        return -1;
    }
    a->mask = (uint64_t)slots - 1;
    return 0;
}

static void release(Args *a) {
    PyBuffer_Release(&a->tab);
    PyBuffer_Release(&a->hi);
    PyBuffer_Release(&a->lo);
}

static PyObject *find(PyObject *self, PyObject *args) {
    Args a;
    if (parse_args(args, &a, 0) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, a.n);
    if (out) {
        unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out);
        const uint64_t *hi = a.hi.buf, *lo = a.lo.buf;
        uint64_t *tab = a.tab.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < a.n; i++)
            m[i] = (hi[i] | lo[i]) ? (unsigned char)probe(tab, a.mask, a.seed, hi[i], lo[i], 0) : 0;
        Py_END_ALLOW_THREADS
    }
    release(&a);
    return out;
}

static PyObject *insert(PyObject *self, PyObject *args) {
    Args a;
    if (parse_args(args, &a, 1) < 0) return NULL;
    const uint64_t *hi = a.hi.buf, *lo = a.lo.buf;
    uint64_t *tab = a.tab.buf;
    Py_ssize_t added = 0;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.n; i++) {
        if (!(hi[i] | lo[i])) continue;
        int r = probe(tab, a.mask, a.seed, hi[i], lo[i], 1);
        if (r < 0) {
            full = 1;
            break;
        }
        added += r == 0;
    }
    Py_END_ALLOW_THREADS
    release(&a);
    if (full) {
        PyErr_SetString(PyExc_ValueError, "insert: the key table is full");
        return NULL;
    }
    return PyLong_FromSsize_t(added);
}

static PyObject *first_new(PyObject *self, PyObject *args) {
    Args a;
    if (parse_args(args, &a, 0) < 0) return NULL;
    PyObject *out = NULL;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)a.n) cap <<= 1;
    uint64_t *seen = PyMem_Calloc(cap, 16);
    if (!seen) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, a.n);
    if (!out) goto done;
    unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out);
    const uint64_t *hi = a.hi.buf, *lo = a.lo.buf;
    uint64_t *tab = a.tab.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.n; i++) {
        if (!(hi[i] | lo[i])) {
            m[i] = 0;
            continue;
        }
        m[i] = !probe(tab, a.mask, a.seed, hi[i], lo[i], 0) && !probe(seen, cap - 1, a.seed, hi[i], lo[i], 1);
    }
    Py_END_ALLOW_THREADS
done:
    PyMem_Free(seen);
    release(&a);
    return out;
}

static PyMethodDef methods[] = {
    {"digests", digests, METH_VARARGS, "digests(offsets, data) -> XXH3-128 canonical digest of each text, 16 bytes each"},
    {"find", find, METH_VARARGS, "find(table, seed, hi, lo) -> bytes: 1 where the key is in the table"},
    {"insert", insert, METH_VARARGS, "insert(table, seed, hi, lo) -> number of keys added"},
    {"first_new", first_new, METH_VARARGS,
     "first_new(table, seed, hi, lo) -> bytes: 1 where the key is not in the table nor earlier in the batch"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_keys", NULL, -1, methods};

PyMODINIT_FUNC PyInit__keys(void) { return PyModule_Create(&module); }
