/* The trees of an XGBoost gbtree model, walked in C (ADR 0014).
 *
 * services/inference/trees.py lays a Booster's trees out for this file and checks, when a
 * model loads, that the answers are XGBoost's own to the bit; these loops only walk.
 *
 * Layout: one array of nodes for the whole forest, each tree's nodes in XGBoost's order
 * (its right child is always its left child + 1, as XGBoost itself assumes). A leaf
 * points back at itself (left = itself - 1, condition -inf, missing goes right), so that
 * every row takes exactly the tree's depth in steps and the loop over a block of rows has
 * no branch that depends on the data.
 *
 * A categorical split sends a row right when its value, cast to an integer category as
 * XGBoost casts it, is one of the node's categories; a negative category, one of 2^24 or
 * more, or one past the node's set goes left (XGBoost's Decision). A forest with such
 * splits walks through the general loop; one without, through the loop with no branch.
 *
 * A row's margin starts at the model's base margin and adds one leaf per tree, in float,
 * in the trees' order: XGBoost's CPU predictor sums the same way, and float addition is
 * not associative. The transforms are XGBoost's (transform_margins).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    float cond;       /* go left when value < cond; a leaf's is -inf */
    int32_t feature;  /* the column it reads; a leaf reads column 0 */
    int32_t left;     /* the right child is left + 1 */
    int32_t missing_right;  /* where NaN goes: 1 right, 0 left */
} Node;

enum { IDENTITY = 0, SIGMOID = 1, SOFTMAX = 2 };
#define BLOCK 16           /* rows walked through a tree together */
#define RELEASE_ROWS 32    /* from this many rows, the walk runs without the GIL */

typedef struct {
    PyObject_HEAD
    Node *nodes;
    float *leaves;      /* per node: a leaf's value (0 for a split) */
    int32_t *roots;     /* per tree */
    int32_t *depths;    /* per tree: steps from the root to its deepest leaf */
    int32_t *groups;    /* per tree: the output it adds to */
    float *base;        /* per output: the margin before any tree */
    int32_t *cat_spans; /* per node: first word of its category bits and how many (-1: numeric) */
    uint32_t *cat_bits; /* category c of a node is bit c % 32 of its word c / 32 */
    Py_ssize_t cat_word_count;
    int categorical;    /* some node splits on categories */
    Py_ssize_t node_count, tree_count;
    int width, outputs, transform;
    int ready;          /* set once every array is in place and checked */
} Forest;

static int copy_buffer(PyObject *source, Py_ssize_t item, Py_ssize_t count, void **into,
                       const char *name) {
    Py_buffer view;
    if (PyObject_GetBuffer(source, &view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view.len != item * count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, item * count,
                     view.len);
        PyBuffer_Release(&view);
        return -1;
    }
    *into = PyMem_Malloc(view.len ? (size_t)view.len : 1);
    if (*into == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*into, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return 0;
}

static void forest_dealloc(Forest *self) {
    PyMem_Free(self->nodes);
    PyMem_Free(self->leaves);
    PyMem_Free(self->roots);
    PyMem_Free(self->depths);
    PyMem_Free(self->groups);
    PyMem_Free(self->base);
    PyMem_Free(self->cat_spans);
    PyMem_Free(self->cat_bits);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Every index a walk can follow stays inside the forest: checked once, here. */
static int check_forest(Forest *f) {
    for (Py_ssize_t i = 0; i < f->node_count; i++) {
        Node n = f->nodes[i];
        if (n.feature < 0 || n.feature >= f->width) {
            PyErr_Format(PyExc_ValueError, "node %zd reads column %d of %d", i, n.feature,
                         f->width);
            return -1;
        }
        if (n.left < -1 || (Py_ssize_t)n.left + 1 >= f->node_count ||
            (n.missing_right != 0 && n.missing_right != 1)) {
            PyErr_Format(PyExc_ValueError, "node %zd has children outside the forest", i);
            return -1;
        }
        if (n.left == -1 && !(n.cond == -INFINITY && n.missing_right == 1)) {
            PyErr_Format(PyExc_ValueError, "node %zd points before the forest", i);
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < f->node_count; i++) {
        const int32_t first = f->cat_spans[2 * i], words = f->cat_spans[2 * i + 1];
        if (first == -1) continue;
        if (first < 0 || words < 0 || (Py_ssize_t)first + words > f->cat_word_count) {
            PyErr_Format(PyExc_ValueError, "node %zd has category bits outside the forest", i);
            return -1;
        }
        f->categorical = 1;
    }
    for (Py_ssize_t t = 0; t < f->tree_count; t++) {
        if (f->roots[t] < 0 || f->roots[t] >= f->node_count || f->depths[t] < 0 ||
            f->groups[t] < 0 || f->groups[t] >= f->outputs) {
            PyErr_Format(PyExc_ValueError, "tree %zd: root, depth or output out of range", t);
            return -1;
        }
    }
    return 0;
}

static int forest_init(Forest *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"nodes", "leaves", "roots", "depths", "groups", "base", "width",
                            "transform", "cat_spans", "cat_bits", NULL};
    PyObject *nodes, *leaves, *roots, *depths, *groups, *base, *cat_spans, *cat_bits;
    int width, transform;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOiiOO", names, &nodes, &leaves, &roots,
                                     &depths, &groups, &base, &width, &transform, &cat_spans,
                                     &cat_bits))
        return -1;
    if (self->ready || self->nodes != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Forest is made once");
        return -1;
    }
    Py_ssize_t node_count = PyObject_Length(leaves);
    Py_ssize_t tree_count = PyObject_Length(roots);
    Py_ssize_t outputs = PyObject_Length(base);
    Py_ssize_t cat_word_count = PyObject_Length(cat_bits);
    if (node_count < 0 || tree_count < 0 || outputs < 0 || cat_word_count < 0) return -1;
    /* counts are the arrays' lengths (elements, for numpy arrays); copy_buffer checks that
     * each array holds that many items of its size */
    if (width < 1 || outputs < 1 || transform < IDENTITY || transform > SOFTMAX ||
        node_count < 1 || tree_count < 1 || node_count > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a forest needs nodes, trees, outputs and columns");
        return -1;
    }
    self->node_count = node_count;
    self->tree_count = tree_count;
    self->width = width;
    self->outputs = (int)outputs;
    self->transform = transform;
    self->cat_word_count = cat_word_count;
    if (copy_buffer(nodes, sizeof(Node), node_count, (void **)&self->nodes, "nodes") < 0 ||
        copy_buffer(leaves, sizeof(float), node_count, (void **)&self->leaves, "leaves") < 0 ||
        copy_buffer(roots, sizeof(int32_t), tree_count, (void **)&self->roots, "roots") < 0 ||
        copy_buffer(depths, sizeof(int32_t), tree_count, (void **)&self->depths, "depths") < 0 ||
        copy_buffer(groups, sizeof(int32_t), tree_count, (void **)&self->groups, "groups") < 0 ||
        copy_buffer(base, sizeof(float), outputs, (void **)&self->base, "base") < 0 ||
        copy_buffer(cat_spans, 2 * sizeof(int32_t), node_count, (void **)&self->cat_spans,
                    "cat_spans") < 0 ||
        copy_buffer(cat_bits, sizeof(uint32_t), cat_word_count, (void **)&self->cat_bits,
                    "cat_bits") < 0)
        return -1;
    if (check_forest(self) < 0) return -1;
    self->ready = 1;
    return 0;
}

/* XGBoost's "value" from the margins: a float sigmoid, or a softmax that subtracts the
 * row's largest margin and sums in double. */
static void transform_margins(const Forest *f, Py_ssize_t n, float *out) {
    const int outputs = f->outputs;
    if (f->transform == SIGMOID) {
        for (Py_ssize_t i = 0; i < n * outputs; i++) out[i] = 1.0f / (1.0f + expf(-out[i]));
    } else if (f->transform == SOFTMAX) {
        for (Py_ssize_t r = 0; r < n; r++) {
            float *row = out + r * outputs;
            float top = row[0];
            for (int g = 1; g < outputs; g++) top = fmaxf(row[g], top);
            double sum = 0.0;
            for (int g = 0; g < outputs; g++) {
                row[g] = expf(row[g] - top);
                sum += row[g];
            }
            for (int g = 0; g < outputs; g++) row[g] /= (float)sum;
        }
    }
}

/* Whether a categorical node sends value (not NaN) right: its category is in the set. */
static inline int in_categories(const Forest *f, int32_t at, float value) {
    if (!(value >= 0.0f && value < 16777216.0f)) return 0;
    const int32_t category = (int32_t)value;
    const int32_t word = category >> 5;
    if (word >= f->cat_spans[2 * at + 1]) return 0;
    return (f->cat_bits[f->cat_spans[2 * at] + word] >> (category & 31)) & 1;
}

/* The loop for forests with categorical splits: the same steps, with a branch per node. */
static void walk_categorical(const Forest *f, const float *x, Py_ssize_t n, float *out) {
    const int width = f->width, outputs = f->outputs;
    for (Py_ssize_t r = 0; r < n; r++) {
        const float *row = x + r * width;
        for (Py_ssize_t t = 0; t < f->tree_count; t++) {
            int32_t at = f->roots[t];
            for (int step = 0; step < f->depths[t]; step++) {
                const Node *node = &f->nodes[at];
                const float value = row[node->feature];
                int right;
                if (isnan(value))
                    right = node->missing_right;
                else if (f->cat_spans[2 * at] >= 0)
                    right = in_categories(f, at, value);
                else
                    right = !(value < node->cond);
                at = node->left + right;
            }
            out[r * outputs + f->groups[t]] += f->leaves[at];
        }
    }
}

static void walk(const Forest *f, const float *x, Py_ssize_t n, float *out) {
    const int width = f->width, outputs = f->outputs;
    for (Py_ssize_t r = 0; r < n; r++)
        for (int g = 0; g < outputs; g++) out[r * outputs + g] = f->base[g];
    if (f->categorical) {
        walk_categorical(f, x, n, out);
        transform_margins(f, n, out);
        return;
    }
    for (Py_ssize_t first = 0; first < n; first += BLOCK) {
        const int rows = (int)(n - first < BLOCK ? n - first : BLOCK);
        const float *block = x + first * width;
        for (Py_ssize_t t = 0; t < f->tree_count; t++) {
            int32_t at[BLOCK];
            for (int k = 0; k < rows; k++) at[k] = f->roots[t];
            for (int step = 0; step < f->depths[t]; step++) {
                for (int k = 0; k < rows; k++) {
                    const Node *node = &f->nodes[at[k]];
                    const float value = block[k * width + node->feature];
                    const int right = isnan(value) ? node->missing_right : !(value < node->cond);
                    at[k] = node->left + right;
                }
            }
            float *sums = out + first * outputs + f->groups[t];
            for (int k = 0; k < rows; k++) sums[k * outputs] += f->leaves[at[k]];
        }
    }
    transform_margins(f, n, out);
}

/* A classifier's answer from the values: probabilities [n, classes] (a one-output forest's
 * value p is the positive class's, after 1 - p for the negative one) and each row's label,
 * the first class of the highest probability as numpy's argmax picks it (a NaN counts as
 * the highest). The values were walked into the first n * outputs floats of probabilities;
 * a one-output forest's are spread out from the last row back, so none is overwritten
 * before it is read. */
static void classify_values(int outputs, Py_ssize_t n, float *probabilities, int64_t *labels) {
    const int classes = outputs == 1 ? 2 : outputs;
    if (outputs == 1) {
        for (Py_ssize_t r = n - 1; r >= 0; r--) {
            const float p = probabilities[r];
            probabilities[2 * r + 1] = p;
            probabilities[2 * r] = 1.0f - p;
        }
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        const float *row = probabilities + r * classes;
        int best = 0;
        for (int c = 1; c < classes && !isnan(row[best]); c++)
            if (row[c] > row[best] || isnan(row[c])) best = c;
        labels[r] = best;
    }
}

/* predict(x, n, out) and, with labels, classify(x, n, probabilities, labels): the walk of
 * the n rows of x into the answer's buffers, each checked against n first. */
static PyObject *answer(Forest *self, PyObject *args, int labelled) {
    Py_buffer x, out, labels = {0};
    Py_ssize_t n;
    if (!self->ready) {
        PyErr_SetString(PyExc_ValueError, "the forest was not made");
        return NULL;
    }
    if (labelled && self->transform == IDENTITY) {
        PyErr_SetString(PyExc_ValueError, "the forest answers margins, not probabilities");
        return NULL;
    }
    if (labelled ? !PyArg_ParseTuple(args, "y*nw*w*", &x, &n, &out, &labels)
                 : !PyArg_ParseTuple(args, "y*nw*", &x, &n, &out))
        return NULL;
    PyObject *result = NULL;
    /* a classifier's one output is answered as two probabilities */
    const int columns = labelled && self->outputs == 1 ? 2 : self->outputs;
    const Py_ssize_t widest = self->width > columns ? self->width : columns;
    /* n is bounded first, so that the sizes below cannot overflow */
    if (n < 0 || n > PY_SSIZE_T_MAX / widest / (Py_ssize_t)sizeof(int64_t) ||
        x.len != n * self->width * (Py_ssize_t)sizeof(float) ||
        out.len != n * columns * (Py_ssize_t)sizeof(float) ||
        (labelled && labels.len != n * (Py_ssize_t)sizeof(int64_t))) {
        if (labelled)
            PyErr_Format(PyExc_ValueError,
                         "expected %zd rows of %d float32 features, room for %d float32 "
                         "probabilities and one int64 label each",
                         n, self->width, columns);
        else
            PyErr_Format(PyExc_ValueError,
                         "expected %zd rows of %d float32 features and room for %d outputs each",
                         n, self->width, columns);
        goto done;
    }
    /* from RELEASE_ROWS rows, without the GIL */
    PyThreadState *released = n >= RELEASE_ROWS ? PyEval_SaveThread() : NULL;
    walk(self, (const float *)x.buf, n, (float *)out.buf);
    if (labelled) classify_values(self->outputs, n, (float *)out.buf, (int64_t *)labels.buf);
    if (released != NULL) PyEval_RestoreThread(released);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    if (labelled) PyBuffer_Release(&labels);
    return result;
}

static PyObject *forest_predict(Forest *self, PyObject *args) { return answer(self, args, 0); }

static PyObject *forest_classify(Forest *self, PyObject *args) { return answer(self, args, 1); }

/* XGBoost's margin for a base score stored as a probability: its logit, in float, with
 * the C library's logf (numpy's float32 log can differ from it in the last bit). */
static PyObject *logit(PyObject *module, PyObject *arg) {
    const double p = PyFloat_AsDouble(arg);
    if (p == -1.0 && PyErr_Occurred()) return NULL;
    const float q = (float)p;
    return PyFloat_FromDouble((double)-logf(1.0f / q - 1.0f));
}

static PyMethodDef module_methods[] = {
    {"logit", logit, METH_O, "logit(p): -logf(1/p - 1) in float, as XGBoost's base margin"},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef forest_methods[] = {
    {"predict", (PyCFunction)forest_predict, METH_VARARGS,
     "predict(x, n, out): the n rows of x (float32, C order) into out (float32, n x outputs)"},
    {"classify", (PyCFunction)forest_classify, METH_VARARGS,
     "classify(x, n, probabilities, labels): a classifier's answer for the n rows of x: "
     "probabilities (float32, n x classes) and labels (int64, n)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ForestType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "services.inference._trees.Forest",
    .tp_basicsize = sizeof(Forest),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An XGBoost forest laid out by services.inference.trees",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)forest_init,
    .tp_dealloc = (destructor)forest_dealloc,
    .tp_methods = forest_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_trees", "XGBoost trees walked in C (ADR 0014).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__trees(void) {
    if (PyType_Ready(&ForestType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Forest", (PyObject *)&ForestType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
