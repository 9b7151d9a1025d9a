/* erp.core._keys: dedup keys in C (optional; erp.core.dedup does the same in Python).
 *
 * ``digests(offsets, data)`` hashes each text of an Arrow large_string column
 * (int64 offsets into ``data``) with XXH3-128 and returns the 16-byte canonical
 * digests back to back: the bytes ``xxhash.xxh3_128_digest`` gives, without a
 * Python call per event.
 *
 * ``first_seen(seed, hi, lo)`` marks each 16-byte key's first appearance in a
 * batch (keys as two uint64 halves), with an open-addressing hash table of the
 * batch. Slots are chosen from the key mixed with the caller's random seed:
 * keys are hashes of event ids that senders choose, and without the seed
 * nobody can make them pile up in one run of slots. The all-zero key marks an
 * empty slot, so it is reported as 0 and left to the caller.
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

static PyObject *first_seen(PyObject *self, PyObject *args) {
    Py_buffer hb, lb;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "Ky*y*", &seed, &hb, &lb)) return NULL;
    PyObject *out = NULL;
    uint64_t *seen = NULL;
    Py_ssize_t n = hb.len / 8;
    if (hb.len % 8 || lb.len != hb.len) {
        PyErr_SetString(PyExc_ValueError, "first_seen: hi and lo must be equal-length uint64 arrays");
        goto done;
    }
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap <<= 1;
    seen = PyMem_Calloc(cap, 16);  /* two words per slot; all zero = empty */
    out = PyBytes_FromStringAndSize(NULL, n);
    if (!seen || !out) {
        Py_CLEAR(out);
        PyErr_NoMemory();
        goto done;
    }
    unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out);
    const uint64_t *hi = hb.buf, *lo = lb.buf;
    const uint64_t mask = cap - 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        m[i] = 0;
        if (!(hi[i] | lo[i])) continue;  /* the empty-slot pattern: the caller decides */
        uint64_t at = slot_of(hi[i], lo[i], (uint64_t)seed) & mask;
        for (;;) {  /* at most half full: an empty slot is always found */
            uint64_t *s = seen + 2 * at;
            if (s[0] == hi[i] && s[1] == lo[i]) break;
            if (!(s[0] | s[1])) {
                s[0] = hi[i];
                s[1] = lo[i];
                m[i] = 1;
                break;
            }
            at = (at + 1) & mask;
        }
    }
    Py_END_ALLOW_THREADS
done:
    PyMem_Free(seen);
    PyBuffer_Release(&hb);
    PyBuffer_Release(&lb);
    return out;
}

static PyMethodDef methods[] = {
    {"digests", digests, METH_VARARGS, "digests(offsets, data) -> XXH3-128 canonical digest of each text, 16 bytes each"},
    {"first_seen", first_seen, METH_VARARGS,
     "first_seen(seed, hi, lo) -> bytes: 1 at each key's first appearance (0 for the all-zero key)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_keys", NULL, -1, methods};

PyMODINIT_FUNC PyInit__keys(void) { return PyModule_Create(&module); }
