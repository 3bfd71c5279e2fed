/* The BPR minibatch SGD update of spotify_assets.train.bpr.FusedBPRStep, as one C loop.
 *
 * Built at run time by spotify_assets.train.native with the machine's C compiler for the
 * machine's own CPU (-O3 -march=native), loaded with ctypes. No Python, no torch headers.
 *
 * Same math as FusedBPRStep (and the autograd reference): per minibatch, every gradient is
 * taken at the pre-minibatch parameters and the updates of repeated rows add up.
 *
 *   x      = <w_u, h_i - h_j> + b_i - b_j
 *   step   = lr * sigmoid(-x)              (= -lr * dloss/dx, loss = softplus(-x))
 *   w_u   += step * (h_i - h_j) - lr*reg*w_u
 *   h_i   += step * w_u         - lr*reg*h_i
 *   h_j   += -step * w_u        - lr*reg*h_j
 *   b_i   += step ;  b_j -= step
 *
 * Why it is faster than the torch ops: the tables (users, playlists) are far bigger than
 * the caches, so the time goes to fetching random rows. Each triplet's rows are fetched
 * once in pass 1 (copied into a scratch block that stays in cache) and written once in
 * pass 2, and both passes prefetch the rows PREFETCH triplets ahead, so ~3 * PREFETCH row
 * fetches are in flight instead of one. The dot products use 16 independent partial sums,
 * which the compiler turns into whatever vectors the CPU has (SSE2, AVX2 or AVX-512) with
 * the same arithmetic (so the result does not depend on the vector width).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PREFETCH 6
#define LANES 16

static inline void prefetch_row(const float *row, int64_t d, int for_write) {
    for (int64_t k = 0; k < d; k += 16) {
        if (for_write) __builtin_prefetch(row + k, 1, 3);
        else __builtin_prefetch(row + k, 0, 3);
    }
}

static inline float dot_diff(const float *w, const float *hi, const float *hj, int64_t d) {
    float acc[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= d; k += LANES)
        for (int l = 0; l < LANES; ++l) acc[l] += w[k + l] * (hi[k + l] - hj[k + l]);
    float s = 0.0f;
    for (int l = 0; l < LANES; ++l) s += acc[l];
    for (; k < d; ++k) s += w[k] * (hi[k] - hj[k]);
    return s;
}

static inline double softplus_neg(float x) { /* torch.nn.functional.softplus(-x), threshold 20 */
    double z = -(double)x;
    return z > 20.0 ? z : log1p(exp(z));
}

/* One minibatch of n triplets (u, i, j) read with the given row stride (3 for triplets,
 * more for wider rows whose first three columns are the triplet). scratch holds 3*n*d + n
 * floats. Returns the summed BPR loss, or -1 - t for the first triplet t with an id out of
 * range (nothing is written then). */
static double batch_update(float *W, float *H, float *b, int64_t d, const int64_t *rows, int64_t stride,
                           int64_t n, float lr, float reg, float *scratch, int64_t n_users, int64_t n_playlists) {
    for (int64_t t = 0; t < n; ++t) {
        const int64_t *r = rows + t * stride;
        if (r[0] < 0 || r[0] >= n_users || r[1] < 0 || r[1] >= n_playlists || r[2] < 0 || r[2] >= n_playlists)
            return -1.0 - (double)t;
    }
    float *wu = scratch, *hi = scratch + n * d, *hj = scratch + 2 * n * d, *step = scratch + 3 * n * d;
    const float decay = -lr * reg;
    double loss = 0.0;
    /* pass 1: gather the pre-minibatch rows, score, step sizes */
    for (int64_t t = 0; t < n; ++t) {
        if (t + PREFETCH < n) {
            const int64_t *p = rows + (t + PREFETCH) * stride;
            prefetch_row(W + p[0] * d, d, 0);
            prefetch_row(H + p[1] * d, d, 0);
            prefetch_row(H + p[2] * d, d, 0);
        }
        const int64_t *r = rows + t * stride;
        float *w = wu + t * d, *pi = hi + t * d, *pj = hj + t * d;
        memcpy(w, W + r[0] * d, (size_t)d * sizeof(float));
        memcpy(pi, H + r[1] * d, (size_t)d * sizeof(float));
        memcpy(pj, H + r[2] * d, (size_t)d * sizeof(float));
        float x = dot_diff(w, pi, pj, d) + b[r[1]] - b[r[2]];
        step[t] = lr / (1.0f + expf(x));
        loss += softplus_neg(x);
    }
    /* pass 2: apply the updates, rows read from the scratch copies */
    for (int64_t t = 0; t < n; ++t) {
        if (t + PREFETCH < n) {
            const int64_t *p = rows + (t + PREFETCH) * stride;
            prefetch_row(W + p[0] * d, d, 1);
            prefetch_row(H + p[1] * d, d, 1);
            prefetch_row(H + p[2] * d, d, 1);
        }
        const int64_t *r = rows + t * stride;
        const float *w = wu + t * d, *pi = hi + t * d, *pj = hj + t * d;
        const float s = step[t];
        float *Wu = W + r[0] * d, *Hi = H + r[1] * d, *Hj = H + r[2] * d;
        for (int64_t k = 0; k < d; ++k) Wu[k] += s * (pi[k] - pj[k]) + decay * w[k];
        for (int64_t k = 0; k < d; ++k) Hi[k] += s * w[k] + decay * pi[k];
        for (int64_t k = 0; k < d; ++k) Hj[k] += decay * pj[k] - s * w[k];
        b[r[1]] += s;
        b[r[2]] -= s;
    }
    return loss;
}

/* n triplet rows (row stride `stride` int64s, the triplet in the first three columns) as
 * consecutive minibatches of `batch` rows (the last one may be shorter), each applied as
 * batch_update does. W (n_users, d), H (n_playlists, d), b (n_playlists,) float32,
 * C-contiguous; scratch holds 3*batch*d + batch floats. Returns the summed loss, or a
 * negative value -1 - t (t: the first bad row) when an id is out of range; minibatches
 * before the bad one have been applied. */
double bpr_sgd_minibatches(float *W, float *H, float *b, int64_t d, const int64_t *rows, int64_t stride,
                           int64_t n, int64_t batch, float lr, float reg, float *scratch, int64_t n_users,
                           int64_t n_playlists) {
    double total = 0.0;
    for (int64_t start = 0; start < n; start += batch) {
        int64_t m = n - start < batch ? n - start : batch;
        double loss = batch_update(W, H, b, d, rows + start * stride, stride, m, lr, reg, scratch, n_users,
                                   n_playlists);
        if (loss < 0.0) return loss - (double)start;
        total += loss;
    }
    return total;
}
