/* erp.core._scan: the fast path of ``erp ingest``'s parser, in C.
 *
 * ``scan(data)`` reads a chunk of NDJSON lines and, for each line and each
 * input field, finds where the field's value is in ``data`` and what kind of
 * JSON value it is. It validates the whole line as strict JSON (RFC 8259) and
 * each field's type as ``erp.core.parse._Check`` declares it, but it never
 * decides that a line is bad: whenever something is not plainly good (a bad
 * line, an unknown or repeated key, an escape in a key or in a scalar string,
 * a number that is not a plain one, a "\u" escape of a surrogate, deep
 * nesting), it returns None and the chunk takes the general path (msgspec,
 * then ``diagnose`` line by line), which decides and says why. So this code
 * can only make a chunk faster, never change what a line becomes; the tests
 * compare both paths on the same chunks.
 *
 * ``gather(data, spans, kinds, field, absent)`` copies one field's values out
 * into one buffer with int64 offsets (an Arrow large_binary column);
 * ``distinct`` tells a field's texts apart (a code per line, the first line of
 * each code), so that each distinct text is decoded and enriched once.
 *
 * UTF-8 is not checked here: the columns are cast to text afterwards, and that
 * cast refuses invalid UTF-8 (the chunk then takes the general path too).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Field order: the module exports it as FIELDS; erp.core.parse.SCAN_FIELDS must
 * equal it (tests/test_scan.py checks). */
enum { F_EVENT_TYPE, F_TIMESTAMP, F_EVENT_ID, F_TENANT_ID, F_USER_ID, F_ANONYMOUS_ID, F_SESSION_ID,
       F_SENT_AT, F_RECEIVED_AT, F_PROPERTIES, F_METADATA, NF };

/* Kinds of value (erp.core.parse.K_*). */
enum { K_ABSENT = 0, K_NULL = 1, K_STRING = 2, K_INT = 3, K_FLOAT = 4, K_OTHER = 5 };

static size_t NAME_LEN[NF];  /* filled from NAMES when the module loads */
static const char *NAMES[NF] = {"event_type", "timestamp", "event_id", "tenant_id", "user_id", "anonymous_id",
                                "session_id", "sent_at", "received_at", "properties", "metadata"};

/* Which kinds each field accepts (bit per kind); free-form fields take any value. */
#define B(k) (1u << (k))
static const unsigned ALLOWED[NF] = {
    B(K_STRING),                                          /* event_type: str */
    B(K_STRING) | B(K_INT) | B(K_FLOAT),                  /* timestamp: str | int | float */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING),                /* event_id */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING),                /* tenant_id */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING) | B(K_INT),     /* user_id */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING) | B(K_INT),     /* anonymous_id */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING) | B(K_INT),     /* session_id */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING) | B(K_INT) | B(K_FLOAT), /* sent_at */
    B(K_ABSENT) | B(K_NULL) | B(K_STRING) | B(K_INT) | B(K_FLOAT), /* received_at */
    0xffu, 0xffu,                                         /* properties, metadata: raw */
};

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p, *end;
} Cur;

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) c->p++;
}

static inline int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A string starting at the opening quote. On success the cursor is past the
 * closing quote; *escaped tells whether it held an escape. 0 on failure. */
/* Bytes of ``w`` (little-endian) that are '"', a backslash or below 0x20: the
 * lowest flagged byte is always right (higher ones may be false positives). */
static inline uint64_t stops(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & highs;
}

static int string(Cur *c, int *escaped) {
    const unsigned char *p = c->p + 1, *end = c->end;
    *escaped = 0;
    for (;;) {
        while (end - p >= 8) {  /* eight bytes at a time */
            uint64_t w, m;
            memcpy(&w, p, 8);
            if ((m = stops(w)) != 0) {
                p += __builtin_ctzll(m) >> 3;
                break;
            }
            p += 8;
        }
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) p++;
        if (p >= end || *p < 0x20) return 0;
        if (*p == '"') { c->p = p + 1; return 1; }
        *escaped = 1;  /* a backslash */
        if (p + 1 >= end) return 0;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u': {
            if (p + 6 > end) return 0;
            int v = 0;
            for (int i = 2; i < 6; i++) {
                int h = hexval(p[i]);
                if (h < 0) return 0;
                v = v * 16 + h;
            }
            if (v >= 0xD800 && v <= 0xDFFF) return 0;  /* surrogates: the general path decides */
            p += 6;
            break;
        }
        default:
            return 0;
        }
    }
}

/* A number; *kind is K_INT or K_FLOAT. ``plain`` refuses exponents, "-0" and
 * more than 18 digits on either side of the point (scalar fields: the general
 * path handles those, whose text msgspec would not give back as it is). */
static int number(Cur *c, int *kind, int plain) {
    const unsigned char *p = c->p, *end = c->end, *start = c->p;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (plain && (p - digits > 18 || (*start == '-' && p - digits == 1 && *digits == '0'))) return 0;
    *kind = K_INT;
    if (p < end && *p == '.') {
        const unsigned char *f = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == f || (plain && p - f > 18)) return 0;
        *kind = K_FLOAT;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (plain) return 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const unsigned char *e = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == e) return 0;
        *kind = K_FLOAT;
    }
    c->p = p;
    return 1;
}

static int literal(Cur *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* Any JSON value (free-form fields). */
static int value(Cur *c, int depth, int *kind) {
    int escaped, k;
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '"':
        *kind = K_OTHER;
        return string(c, &escaped);
    case 'n':
        *kind = K_NULL;
        return literal(c, "null", 4);
    case 't':
        *kind = K_OTHER;
        return literal(c, "true", 4);
    case 'f':
        *kind = K_OTHER;
        return literal(c, "false", 5);
    case '{':
    case '[': {
        unsigned char close = *c->p == '{' ? '}' : ']';
        int object = close == '}';
        *kind = K_OTHER;
        if (depth >= MAX_DEPTH) return 0;
        c->p++;
        ws(c);
        if (c->p < c->end && *c->p == close) { c->p++; return 1; }
        for (;;) {
            if (object) {
                if (c->p >= c->end || *c->p != '"' || !string(c, &escaped)) return 0;
                ws(c);
                if (c->p >= c->end || *c->p != ':') return 0;
                c->p++;
                ws(c);
            }
            if (!value(c, depth + 1, &k)) return 0;
            ws(c);
            if (c->p >= c->end) return 0;
            if (*c->p == ',') { c->p++; ws(c); continue; }
            if (*c->p == close) { c->p++; return 1; }
            return 0;
        }
    }
    default:
        *kind = K_OTHER;
        return number(c, &k, 0);
    }
}

/* One line: fills kinds[NF] and spans[2 * NF] (offsets in the chunk). */
static int line(const unsigned char *base, const unsigned char *p, const unsigned char *end,
                unsigned char *kinds, int64_t *spans) {
    Cur c = {p, end};
    unsigned seen = 0;
    int escaped, kind;
    memset(kinds, K_ABSENT, NF);
    memset(spans, 0, sizeof(int64_t) * 2 * NF);
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return 0;
    c.p++;
    ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            if (c.p >= c.end || *c.p != '"') return 0;
            const unsigned char *k0 = c.p + 1;
            if (!string(&c, &escaped) || escaped) return 0;
            size_t klen = (size_t)(c.p - 1 - k0);
            int f = -1;
            for (int i = 0; i < NF; i++) {
                if (NAME_LEN[i] == klen && memcmp(NAMES[i], k0, klen) == 0) { f = i; break; }
            }
            if (f < 0 || (seen & (1u << f))) return 0;  /* unknown or repeated key */
            seen |= 1u << f;
            ws(&c);
            if (c.p >= c.end || *c.p != ':') return 0;
            c.p++;
            ws(&c);
            const unsigned char *v0 = c.p;
            if (f >= F_PROPERTIES) {
                if (!value(&c, 1, &kind)) return 0;
                spans[2 * f] = v0 - base;
                spans[2 * f + 1] = c.p - base;
            } else if (c.p < c.end && *c.p == '"') {
                if (!string(&c, &escaped) || escaped) return 0;
                kind = K_STRING;
                spans[2 * f] = v0 + 1 - base;  /* the text between the quotes */
                spans[2 * f + 1] = c.p - 1 - base;
            } else if (c.p < c.end && *c.p == 'n') {
                if (!literal(&c, "null", 4)) return 0;
                kind = K_NULL;
            } else {
                if (!number(&c, &kind, 1)) return 0;
                spans[2 * f] = v0 - base;
                spans[2 * f + 1] = c.p - base;
            }
            if (!(ALLOWED[f] & B(kind))) return 0;
            kinds[f] = (unsigned char)kind;
            ws(&c);
            if (c.p >= c.end) return 0;
            if (*c.p == ',') { c.p++; ws(&c); continue; }
            if (*c.p == '}') { c.p++; break; }
            return 0;
        }
    }
    ws(&c);
    if (c.p != c.end) return 0;  /* something after the object */
    for (int f = 0; f < NF; f++) {
        if (!(ALLOWED[f] & B(kinds[f]))) return 0;  /* a required field is missing */
    }
    return 1;
}

static Py_ssize_t count_newlines(const unsigned char *q, const unsigned char *end) {
    Py_ssize_t n = 0;
    while (q < end) {
        const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
        if (!nl) break;
        n++;
        q = nl + 1;
    }
    return n;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    const unsigned char *data = buf.buf, *end = data + buf.len;
    /* lines: one per newline, and a last one without its newline */
    Py_ssize_t n = count_newlines(data, end) + (data < end && end[-1] != '\n');
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, n * NF);
    PyObject *spans = PyBytes_FromStringAndSize(NULL, n * NF * 2 * (Py_ssize_t)sizeof(int64_t));
    if (!kinds || !spans) {
        Py_XDECREF(kinds);
        Py_XDECREF(spans);
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *k = (unsigned char *)PyBytes_AS_STRING(kinds);
    int64_t *s = (int64_t *)PyBytes_AS_STRING(spans);
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *q = data;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
        const unsigned char *stop = nl ? nl : end;
        if (!line(data, q, stop, k + i * NF, s + i * NF * 2)) { ok = 0; break; }
        q = stop + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (!ok) {
        Py_DECREF(kinds);
        Py_DECREF(spans);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NN)", kinds, spans);
}

static PyObject *gather(PyObject *self, PyObject *args) {
    Py_buffer buf, sp, kd, ab;
    int field;
    if (!PyArg_ParseTuple(args, "y*y*y*iy*", &buf, &sp, &kd, &field, &ab)) return NULL;
    PyObject *offsets = NULL, *values = NULL, *out = NULL;
    Py_ssize_t n = kd.len / NF;
    if (field < 0 || field >= NF || kd.len != n * NF || sp.len != n * NF * 2 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "gather: spans and kinds do not match");
        goto done;
    }
    const unsigned char *data = buf.buf, *kinds = kd.buf, *absent = ab.buf;
    const int64_t *spans = sp.buf;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a = spans[(i * NF + field) * 2], b = spans[(i * NF + field) * 2 + 1];
        if (a < 0 || b < a || b > buf.len) {
            PyErr_SetString(PyExc_ValueError, "gather: a span is outside the data");
            goto done;
        }
        total += kinds[i * NF + field] <= K_NULL ? ab.len : b - a;
    }
    offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int64_t));
    values = PyBytes_FromStringAndSize(NULL, total);
    if (!offsets || !values) goto done;
    int64_t *o = (int64_t *)PyBytes_AS_STRING(offsets);
    unsigned char *v = (unsigned char *)PyBytes_AS_STRING(values);
    int64_t at = 0;
    o[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kinds[i * NF + field] <= K_NULL) {
            memcpy(v + at, absent, (size_t)ab.len);
            at += ab.len;
        } else {
            int64_t a = spans[(i * NF + field) * 2], b = spans[(i * NF + field) * 2 + 1];
            memcpy(v + at, data + a, (size_t)(b - a));
            at += b - a;
        }
        o[i + 1] = at;
    }
    out = Py_BuildValue("(OO)", offsets, values);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(values);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&sp);
    PyBuffer_Release(&kd);
    PyBuffer_Release(&ab);
    return out;
}

/* A 64-bit hash of ``n`` bytes, eight at a time (for the table in ``distinct``). */
static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 29);
}

/* distinct(data, spans, kinds, field, absent) -> (uint32 code per line, int64
 * first line of each code): the field's texts told apart, codes in order of
 * first appearance (an absent or null value is the text ``absent``). */
static PyObject *distinct(PyObject *self, PyObject *args) {
    Py_buffer buf, sp, kd, ab;
    int field;
    if (!PyArg_ParseTuple(args, "y*y*y*iy*", &buf, &sp, &kd, &field, &ab)) return NULL;
    PyObject *codes = NULL, *firsts = NULL, *out = NULL;
    int64_t *slots = NULL, *first = NULL;
    Py_ssize_t n = kd.len / NF;
    if (field < 0 || field >= NF || kd.len != n * NF || sp.len != n * NF * 2 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "distinct: spans and kinds do not match");
        goto done;
    }
    const unsigned char *data = buf.buf, *kinds = kd.buf;
    const int64_t *spans = sp.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a = spans[(i * NF + field) * 2], b = spans[(i * NF + field) * 2 + 1];
        if (a < 0 || b < a || b > buf.len) {
            PyErr_SetString(PyExc_ValueError, "distinct: a span is outside the data");
            goto done;
        }
    }
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap <<= 1;
    slots = PyMem_Malloc(cap * sizeof(int64_t));  /* code + 1 per slot, 0 = empty */
    first = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    codes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    if (!slots || !first || !codes) {
        PyErr_NoMemory();
        goto done;
    }
    memset(slots, 0, cap * sizeof(int64_t));
    uint32_t *code = (uint32_t *)PyBytes_AS_STRING(codes);
    int64_t k = 0;
#define TEXT(i, P, L)                                                              \
    do {                                                                           \
        if (kinds[(i) * NF + field] <= K_NULL) {                                   \
            P = ab.buf;                                                            \
            L = (size_t)ab.len;                                                    \
        } else {                                                                   \
            P = data + spans[((i) * NF + field) * 2];                              \
            L = (size_t)(spans[((i) * NF + field) * 2 + 1] - spans[((i) * NF + field) * 2]); \
        }                                                                          \
    } while (0)
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *p;
        size_t len;
        TEXT(i, p, len);
        size_t at = (size_t)hash_bytes(p, len) & (cap - 1);
        for (;;) {
            int64_t c = slots[at];
            if (c == 0) {
                slots[at] = k + 1;
                first[k] = i;
                code[i] = (uint32_t)k++;
                break;
            }
            const unsigned char *q;
            size_t qlen;
            TEXT(first[c - 1], q, qlen);
            if (qlen == len && memcmp(p, q, len) == 0) {
                code[i] = (uint32_t)(c - 1);
                break;
            }
            at = (at + 1) & (cap - 1);
        }
    }
#undef TEXT
    firsts = PyBytes_FromStringAndSize((const char *)first, k * (Py_ssize_t)sizeof(int64_t));
    if (firsts) out = Py_BuildValue("(OO)", codes, firsts);
done:
    PyMem_Free(slots);
    PyMem_Free(first);
    Py_XDECREF(codes);
    Py_XDECREF(firsts);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&sp);
    PyBuffer_Release(&kd);
    PyBuffer_Release(&ab);
    return out;
}

/* --- strip_members: promoted metadata keys out of JSON object texts ------------ */

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* The end of the value at ``p`` in a plain text (no backslash, no object):
 * a string, an array (of scalars and arrays) or a bare word; NULL if malformed.
 * *string_or_null is set when the value is a string or null. */
static const unsigned char *plain_value(const unsigned char *p, const unsigned char *end, int *string_or_null) {
    *string_or_null = 0;
    if (p >= end) return NULL;
    if (*p == '"') {
        const unsigned char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q) return NULL;
        *string_or_null = 1;
        return q + 1;
    }
    if (*p == '[') {
        int depth = 0;
        for (; p < end; p++) {
            if (*p == '"') {
                const unsigned char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
                if (!q) return NULL;
                p = q;
            } else if (*p == '[') {
                depth++;
            } else if (*p == ']' && --depth == 0) {
                return p + 1;
            }
        }
        return NULL;
    }
    const unsigned char *q = p;
    while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
        q++;
    if (q == p) return NULL;
    *string_or_null = (q - p == 4 && memcmp(p, "null", 4) == 0);
    return q;
}

typedef struct {
    const char *p;
    Py_ssize_t n;
} key_t_;

/* One plain object text with its members ``"key": <string or null>`` removed,
 * appended to out; the removal follows the pattern of erp.core.enrich.
 * strip_keys_expr exactly: a member after a comma goes with that comma and the
 * whitespace before it, a first member with the whitespace and comma after it.
 * Returns 0, or -1 if the text is not a plain object (then nothing is written). */
static int strip_one(const unsigned char *t, const unsigned char *end, const key_t_ *keys, int nkeys,
                     unsigned char *out, size_t *outn) {
    size_t n0 = *outn;
    const unsigned char *p = skip_ws(t, end);
    if (p >= end || *p != '{') return -1;
    p++;
    const unsigned char *copied = t;     /* text before this is in out already */
    const unsigned char *prev_end = NULL; /* end of the previous member's value, when a comma follows it */
    for (;;) {
        const unsigned char *k = skip_ws(p, end);
        if (k < end && *k == '}') break;
        if (k >= end || *k != '"') goto bad;
        const unsigned char *kend = memchr(k + 1, '"', (size_t)(end - k - 1));
        if (!kend) goto bad;
        const unsigned char *colon = skip_ws(kend + 1, end);
        if (colon >= end || *colon != ':') goto bad;
        const unsigned char *v = skip_ws(colon + 1, end);
        int sn;
        const unsigned char *vend = plain_value(v, end, &sn);
        if (!vend) goto bad;
        int promoted = 0;
        if (sn) {
            for (int i = 0; i < nkeys; i++)
                if (kend - k - 1 == keys[i].n && memcmp(k + 1, keys[i].p, (size_t)keys[i].n) == 0) {
                    promoted = 1;
                    break;
                }
        }
        const unsigned char *after = skip_ws(vend, end);
        if (after >= end || (*after != ',' && *after != '}')) goto bad;
        if (promoted && !prev_end) { /* a first member: up to the next member or the closing brace */
            const unsigned char *q = after;
            if (*q == ',') q = skip_ws(q + 1, end);
            memcpy(out + *outn, copied, (size_t)(k - copied));
            *outn += (size_t)(k - copied);
            copied = q;
            if (*after == '}') break;
            p = q; /* the next member has no comma before it any more: prev_end stays NULL */
            continue;
        }
        if (promoted) { /* a member after a comma: from the end of the previous value */
            memcpy(out + *outn, copied, (size_t)(prev_end - copied));
            *outn += (size_t)(prev_end - copied);
            copied = vend;
        }
        prev_end = vend; /* where the next member's comma (and whitespace before it) begins */
        if (*after == '}') break;
        p = after + 1;
    }
    memcpy(out + *outn, copied, (size_t)(end - copied));
    *outn += (size_t)(end - copied);
    return 0;
bad:
    *outn = n0;
    return -1;
}

/* strip_members(offsets, data, keys) -> (offsets, data, hard): each text of an
 * Arrow large_string column (int64 offsets, no nulls) with its top-level
 * ``"key": <string or null>`` members removed. Texts with a backslash or a
 * brace after their first character (``hard`` 1: keys spelled with escapes,
 * objects inside the object) are copied unchanged, and the caller strips them
 * with a JSON parser. */
static PyObject *strip_members(PyObject *self, PyObject *args) {
    Py_buffer ob, db;
    PyObject *keys_o;
    if (!PyArg_ParseTuple(args, "y*y*O!", &ob, &db, &PyTuple_Type, &keys_o)) return NULL;
    PyObject *res = NULL, *offs_out = NULL, *data_out = NULL, *hard_out = NULL;
    key_t_ keys[8];
    int nkeys = (int)PyTuple_GET_SIZE(keys_o);
    Py_ssize_t n = ob.len / (Py_ssize_t)sizeof(int64_t) - 1;
    const int64_t *offs = ob.buf;
    if (nkeys > 8 || n < 0 || ob.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "strip_members: at most 8 keys, and int64 offsets");
        goto done;
    }
    for (int i = 0; i < nkeys; i++) {
        PyObject *k = PyTuple_GET_ITEM(keys_o, i);
        if (!PyBytes_Check(k)) {
            PyErr_SetString(PyExc_TypeError, "strip_members: keys must be bytes");
            goto done;
        }
        keys[i].p = PyBytes_AS_STRING(k);
        keys[i].n = PyBytes_GET_SIZE(k);
    }
    for (Py_ssize_t i = 0; i <= n; i++)
        if (offs[i] < (i ? offs[i - 1] : 0) || offs[i] > db.len) {
            PyErr_SetString(PyExc_ValueError, "strip_members: offsets outside the data");
            goto done;
        }
    int64_t total = n >= 0 ? offs[n] - offs[0] : 0;
    offs_out = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int64_t));
    data_out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    hard_out = PyBytes_FromStringAndSize(NULL, n);
    if (!offs_out || !data_out || !hard_out) goto done;
    int64_t *oo = (int64_t *)PyBytes_AS_STRING(offs_out);
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data_out);
    unsigned char *hard = (unsigned char *)PyBytes_AS_STRING(hard_out);
    const unsigned char *data = db.buf;
    size_t outn = 0;
    Py_BEGIN_ALLOW_THREADS
    oo[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *t = data + offs[i], *end = data + offs[i + 1];
        /* as strip_keys judges: a backslash anywhere, or a brace after the first character */
        int is_hard = memchr(t, '\\', (size_t)(end - t)) != NULL ||
                      (end - t > 1 && memchr(t + 1, '{', (size_t)(end - t - 1)) != NULL);
        if (is_hard || strip_one(t, end, keys, nkeys, out, &outn) < 0) {
            memcpy(out + outn, t, (size_t)(end - t));
            outn += (size_t)(end - t);
        }
        hard[i] = (unsigned char)is_hard;
        oo[i + 1] = (int64_t)outn;
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&data_out, (Py_ssize_t)outn) < 0) goto done;
    res = Py_BuildValue("(OOO)", offs_out, data_out, hard_out);
done:
    Py_XDECREF(offs_out);
    Py_XDECREF(data_out);
    Py_XDECREF(hard_out);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&db);
    return res;
}

/* The offset of every newline in ``data``, as int64s (numpy's ``flatnonzero(buf
 * == 10)`` made a 16 MiB mask of fresh pages per chunk). */
static PyObject *newlines(PyObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    const unsigned char *data = buf.buf, *end = data + buf.len;
    Py_ssize_t n = count_newlines(data, end);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *q = data;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
        o[i] = (int64_t)(nl - data);
        q = nl + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef methods[] = {
    {"newlines", newlines, METH_VARARGS, "newlines(data) -> int64 offset of each newline in data"},
    {"strip_members", strip_members, METH_VARARGS,
     "strip_members(offsets, data, keys) -> (offsets, data, hard): top-level \"key\": <string or null> "
     "members removed from JSON object texts; hard texts (backslash, nested object) copied unchanged"},
    {"scan", scan, METH_VARARGS,
     "scan(data) -> (kinds, spans) or None: each line's fields, or None when the chunk needs the general path"},
    {"gather", gather, METH_VARARGS,
     "gather(data, spans, kinds, field, absent) -> (int64 offsets, values) of one field"},
    {"distinct", distinct, METH_VARARGS,
     "distinct(data, spans, kinds, field, absent) -> (uint32 code per line, int64 first line per code)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void) {
    for (int i = 0; i < NF; i++) NAME_LEN[i] = strlen(NAMES[i]);
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyObject *fields = PyTuple_New(NF);
    if (!fields) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < NF; i++) {
        PyObject *name = PyUnicode_FromString(NAMES[i]);
        if (!name) {
            Py_DECREF(fields);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, i, name);
    }
    if (PyModule_AddObject(m, "FIELDS", fields) < 0) {
        Py_DECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
