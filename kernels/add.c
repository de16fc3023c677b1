// add: out = a + b element by element, for residual connections and for summing one
// gradient into another (din += dout is tmix_add(be, din, din, dout)); add_relu: a residual
// connection and the ReLU after it.
#include "check.h"
#include "cpu.h"
#include "ops.h"

// out may be a or b exactly (element i is read before it is written), but a partial overlap
// would read values already overwritten.
static bool overlaps_partly(const tmix_tensor *x, const tmix_tensor *y)
{
    uintptr_t a = (uintptr_t)x->data, b = (uintptr_t)y->data, n = tmix_tensor_bytes(x);
    return a != b && a < b + n && b < a + n;
}

static int check_add(const char *op, tmix_backend *be, tmix_tensor *out, const tmix_tensor *a,
                     const tmix_tensor *b)
{
    TMIX_CHECK_BACKEND(op, be, add);
    TMIX_TRY(tmix_check_tensor(op, "a", a, be, TMIX_F32, -1));
    TMIX_TRY(tmix_check_shape(op, "b", b, be, TMIX_F32, a->ndim, a->shape));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, a->ndim, a->shape));
    if (overlaps_partly(out, a) || overlaps_partly(out, b)) {
        char s[96];
        return tmix_fail(TMIX_EINVAL, "%s: out %s overlaps %s without being it", op,
                         tmix_shape_str(out, s, sizeof s), overlaps_partly(out, a) ? "a" : "b");
    }
    return 0;
}

int tmix_add(tmix_backend *be,
             tmix_tensor *out,    // any shape
             const tmix_tensor *a, // same shape
             const tmix_tensor *b) // same shape
{
    static const char op[] = "add";
    TMIX_TRY(check_add(op, be, out, a, b));
    TMIX_CALL(op, be, add, out, a, b, false);
}

int tmix_add_relu(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b)
{
    static const char op[] = "add_relu";
    TMIX_TRY(check_add(op, be, out, a, b));
    TMIX_CALL(op, be, add, out, a, b, true);
}

int tmix_cpu_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b,
                 bool relu)
{
    (void)be;
    const int64_t n = tmix_tensor_numel(a);
    const float *x = tmix_f32(a), *z = tmix_f32(b);
    float *y = tmix_f32(out);
    if (!relu) {
#pragma omp parallel for simd schedule(static) if (n >= TMIX_CPU_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] + z[i];
        return 0;
    }
#pragma omp parallel for simd schedule(static) if (n >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] + z[i];
        y[i] = v < 0.0f ? 0.0f : v; // as tmix_cpu_relu_forward
    }
    return 0;
}
