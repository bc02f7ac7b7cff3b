/* The monitor's two per-row loops, in C: counting a batch's numeric features on their
 * reference grids and bins, and writing a batch's prediction ids as one JSON array.
 *
 * The first replaces a dozen numpy passes over the whole [features, rows] block (each a
 * fresh temporary) by one pass over each column, with the interpreter lock released; the
 * second replaces decoding every id to a Python string, a set and json.dumps by one copy
 * of the ids' bytes. What they compute is defined by the numpy paths they stand in for
 * (accumulate.count_numeric, one column at a time; batches.prediction_ids_json's general
 * path), and tests/unit/monitor/test_kernels.py holds them to those (ADR 0013).
 *
 * Compiled with -ffp-contract=off: (x - lo) * scale must round as numpy rounds it, or
 * a value on a cell's edge could land in the next cell.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Parameters per feature, in this order, then its padded edges. */
enum { P_LO, P_SCALE, P_RANGE_MIN, P_RANGE_MAX, P_REF_MIN, P_REF_MAX, P_FIXED };
/* Results per feature: counts (rows, missing, out of range, outside the reference). */
enum { C_ROWS, C_MISSING, C_OUT, C_OUTSIDE, C_FIXED };
/* Floats per feature. */
enum { F_SUM, F_SQUARES, F_LOW, F_HIGH, F_FIXED };

/* Number of edges at or below v (the edges increase, padded with +inf). */
static inline Py_ssize_t edges_below(const double *edges, Py_ssize_t count, double v) {
    if (count <= 32) { /* numeric_block.COMPARE_EDGES: compared with each, no branch */
        Py_ssize_t k = 0;
        for (Py_ssize_t e = 0; e < count; e++) {
            k += v >= edges[e];
        }
        return k;
    }
    Py_ssize_t lo = 0, hi = count; /* first edge above v */
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (edges[mid] <= v) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void count_column(const double *x, const char *given, Py_ssize_t n, const double *p,
                         Py_ssize_t edge_count, Py_ssize_t grid_cells, int64_t *ints,
                         double *floats) {
    const double lo = p[P_LO], scale = p[P_SCALE];
    const double range_min = p[P_RANGE_MIN], range_max = p[P_RANGE_MAX];
    const double ref_min = p[P_REF_MIN], ref_max = p[P_REF_MAX];
    const double *edges = p + P_FIXED;
    int64_t *grid = ints + C_FIXED;          /* grid_cells + 3 cells */
    int64_t *bins = grid + grid_cells + 3;   /* edge_count + 2 bins */
    const double top = (double)grid_cells;
    int64_t missing = 0, out = 0, outside = 0;
    double sum = 0.0, squares = 0.0, low = INFINITY, high = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double v = x[i];
        if ((given != NULL && given[i]) || !isfinite(v)) {
            missing++;
            continue;
        }
        /* floor((v - lo) * scale) clipped to [-1, grid_cells], without calling floor():
         * below 0 (or NaN, from a degenerate grid) the clipped floor is -1; from 0 up,
         * truncation is the floor. */
        const double t = (v - lo) * scale;
        Py_ssize_t cell = t >= 0.0 ? (t >= top ? grid_cells : (Py_ssize_t)t) : -1;
        grid[cell + 1]++;
        bins[edges_below(edges, edge_count, v)]++;
        if (v < range_min || v > range_max) {
            out++;
        } else if (v < ref_min || v > ref_max) {
            outside++;
        }
        sum += v;
        squares += v * v;
        low = v < low ? v : low;
        high = v > high ? v : high;
    }
    grid[grid_cells + 2] += missing;
    bins[edge_count + 1] += missing;
    ints[C_ROWS] += n;
    ints[C_MISSING] += missing;
    ints[C_OUT] += out;
    ints[C_OUTSIDE] += outside;
    floats[F_SUM] = sum;
    floats[F_SQUARES] = squares;
    floats[F_LOW] = low;
    floats[F_HIGH] = high;
}

static void release_all(Py_buffer *views, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyBuffer_Release(&views[i]);
    }
}

/* Fill views[0..count) with C-contiguous buffers of `size` bytes each from `items`
 * (None allowed where allow_none, left with buf NULL); on error, releases what it took. */
static int take_buffers(PyObject *items, Py_ssize_t count, Py_ssize_t size, int allow_none,
                        const char *what, Py_buffer *views) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (allow_none && item == Py_None) {
            memset(&views[i], 0, sizeof(Py_buffer));
            continue;
        }
        if (PyObject_GetBuffer(item, &views[i], PyBUF_C_CONTIGUOUS) < 0) {
            release_all(views, i);
            return -1;
        }
        if (views[i].len != size) {
            PyErr_Format(PyExc_ValueError, "%s[%zd]: expected %zd bytes, got %zd", what, i,
                         size, views[i].len);
            release_all(views, i + 1);
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(count_numeric_doc,
             "count_numeric(columns, missing, params, edge_count, grid_cells, ints, floats)\n"
             "\n"
             "Count each float64 column of `columns` (n rows each) on its feature's grid and\n"
             "bins. `missing`: a bool array per column (True: no value) or None. `params`:\n"
             "float64 [f, 6 + edge_count] (grid low, grid scale, allowed min and max,\n"
             "reference min and max, edges padded with +inf). Adds into `ints`, int64\n"
             "[f, 4 + grid_cells + 3 + edge_count + 2] (rows, missing, out of range,\n"
             "outside the reference; grid cells; bins), and sets `floats`, float64 [f, 4]\n"
             "(sum, sum of squares, minimum, maximum of the present values).");

static PyObject *count_numeric(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *columns, *masks;
    Py_buffer params, ints, floats;
    Py_ssize_t edge_count, grid_cells;
    if (!PyArg_ParseTuple(args, "OOy*nnw*w*", &columns, &masks, &params, &edge_count,
                          &grid_cells, &ints, &floats)) {
        return NULL;
    }
    PyObject *result = NULL, *xs = NULL, *ms = NULL;
    Py_buffer *views = NULL;
    Py_ssize_t f = 0, n = 0, taken = 0;
    xs = PySequence_Fast(columns, "columns: expected a sequence of arrays");
    ms = xs == NULL ? NULL : PySequence_Fast(masks, "missing: expected a sequence");
    if (ms == NULL) {
        goto done;
    }
    f = PySequence_Fast_GET_SIZE(xs);
    if (PySequence_Fast_GET_SIZE(ms) != f || edge_count < 0 || grid_cells < 1) {
        PyErr_SetString(PyExc_ValueError, "count_numeric: inconsistent arguments");
        goto done;
    }
    const Py_ssize_t stride = C_FIXED + grid_cells + 3 + edge_count + 2;
    if (params.len != f * (P_FIXED + edge_count) * 8 || ints.len != f * stride * 8 ||
        floats.len != f * F_FIXED * 8) {
        PyErr_SetString(PyExc_ValueError, "count_numeric: parameter or result sizes do not fit");
        goto done;
    }
    if (f == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    views = PyMem_Calloc((size_t)(2 * f), sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_buffer first;
    if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(xs, 0), &first, PyBUF_C_CONTIGUOUS) < 0) {
        goto done;
    }
    n = first.len / 8;
    PyBuffer_Release(&first);
    if (take_buffers(xs, f, n * 8, 0, "columns", views) < 0) {
        goto done;
    }
    if (take_buffers(ms, f, n, 1, "missing", views + f) < 0) {
        release_all(views, f);
        goto done;
    }
    taken = 1;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t j = 0; j < f; j++) {
        count_column((const double *)views[j].buf, (const char *)views[f + j].buf, n,
                     (const double *)params.buf + j * (P_FIXED + edge_count), edge_count,
                     grid_cells, (int64_t *)ints.buf + j * stride,
                     (double *)floats.buf + j * F_FIXED);
    }
    Py_END_ALLOW_THREADS;
    result = Py_NewRef(Py_None);
done:
    if (taken) {
        for (Py_ssize_t i = 0; i < 2 * f; i++) {
            if (views[i].buf != NULL) {
                PyBuffer_Release(&views[i]);
            }
        }
    }
    PyMem_Free(views);
    Py_XDECREF(xs);
    Py_XDECREF(ms);
    PyBuffer_Release(&params);
    PyBuffer_Release(&ints);
    PyBuffer_Release(&floats);
    return result;
}

/* An FNV-1a hash of one id, for the duplicate check of unsorted ids. */
static uint64_t hash_id(const unsigned char *s, Py_ssize_t size) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < size; i++) {
        h = (h ^ s[i]) * 1099511628211ULL;
    }
    return h;
}

/* 1 when the n ids of `size` bytes (`step` apart from `body`) are all different. */
static int all_different(const unsigned char *body, Py_ssize_t n, Py_ssize_t size,
                         Py_ssize_t step) {
    int increasing = 1;
    for (Py_ssize_t i = 1; i < n && increasing; i++) {
        increasing = memcmp(body + (i - 1) * step, body + i * step, (size_t)size) < 0;
    }
    if (increasing) {
        return 1;
    }
    Py_ssize_t slots = 1;
    while (slots < 2 * n) {
        slots <<= 1;
    }
    Py_ssize_t *table = malloc((size_t)slots * sizeof(Py_ssize_t));
    if (table == NULL) {
        return -1;
    }
    for (Py_ssize_t s = 0; s < slots; s++) {
        table[s] = -1;
    }
    int different = 1;
    for (Py_ssize_t i = 0; i < n && different; i++) {
        const unsigned char *id = body + i * step;
        Py_ssize_t s = (Py_ssize_t)(hash_id(id, size) & (uint64_t)(slots - 1));
        while (table[s] >= 0) {
            if (memcmp(body + table[s] * step, id, (size_t)size) == 0) {
                different = 0;
                break;
            }
            s = (s + 1) & (slots - 1);
        }
        table[s] = i;
    }
    free(table);
    return different;
}

PyDoc_STRVAR(plain_ids_json_doc,
             "plain_ids_json(data, n, max_size) -> str | None\n"
             "\n"
             "`data`: n length-prefixed values (a 4-byte little-endian length before\n"
             "each). When they all have one length of 1 to max_size bytes, are printable\n"
             "ASCII without '\"' or '\\\\', and are all different, returns them as one JSON\n"
             "array (no spaces); otherwise None, and the caller takes the general path.");

static PyObject *plain_ids_json(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    Py_ssize_t n, max_size;
    if (!PyArg_ParseTuple(args, "y*nn", &data, &n, &max_size)) {
        return NULL;
    }
    PyObject *result = NULL;
    const unsigned char *bytes = data.buf;
    Py_ssize_t step = n > 0 ? data.len / n : 0;
    Py_ssize_t size = step - 4;
    if (n <= 0 || data.len % n != 0 || size < 1 || size > max_size) {
        goto plain_not;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *row = bytes + i * step;
        uint32_t length = (uint32_t)row[0] | (uint32_t)row[1] << 8 | (uint32_t)row[2] << 16 |
                          (uint32_t)row[3] << 24;
        if (length != (uint32_t)size) {
            goto plain_not;
        }
        for (Py_ssize_t k = 4; k < step; k++) {
            unsigned char c = row[k];
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                goto plain_not;
            }
        }
    }
    int different = all_different(bytes + 4, n, size, step);
    if (different < 0) {
        PyErr_NoMemory();
        goto plain_done;
    }
    if (!different) {
        goto plain_not;
    }
    /* [ "id" , "id" ... ] : 2 brackets, n * (size + 2 quotes) and n - 1 commas. */
    result = PyUnicode_New(2 + n * (size + 3) - 1, 127);
    if (result == NULL) {
        goto plain_done;
    }
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(result);
    *w++ = '[';
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i) {
            *w++ = ',';
        }
        *w++ = '"';
        memcpy(w, bytes + i * step + 4, (size_t)size);
        w += size;
        *w++ = '"';
    }
    *w = ']';
    goto plain_done;
plain_not:
    result = Py_NewRef(Py_None);
plain_done:
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"count_numeric", count_numeric, METH_VARARGS, count_numeric_doc},
    {"plain_ids_json", plain_ids_json, METH_VARARGS, plain_ids_json_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_kernels",
    .m_doc = "The monitor's per-row loops in C (ADR 0013).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
