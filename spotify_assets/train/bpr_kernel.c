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

#ifndef PREFETCH
#define PREFETCH 6
#endif
#ifndef MINE_PREFETCH
#define MINE_PREFETCH 4
#endif
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

/* ---- membership in the training interactions --------------------------------------- */

/* Is key (= user * n_playlists + playlist) among keys[lo:hi] (sorted)? */
static inline int in_segment(const int64_t *keys, int64_t lo, int64_t hi, int64_t key) {
    const int64_t end = hi;
    while (lo < hi) {
        int64_t mid = lo + ((hi - lo) >> 1);
        if (keys[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < end && keys[lo] == key;
}

static inline int is_interaction(const int64_t *keys, const int64_t *indptr, int64_t n_playlists, int64_t user,
                                 int64_t playlist) {
    int64_t lo = indptr[user], hi = indptr[user + 1];
    return lo < hi && in_segment(keys, lo, hi, user * n_playlists + playlist);
}

/* out[t] = 1 if (users[t], playlists[t]) is an interaction, else 0; t < n. keys: sorted
 * user * n_playlists + playlist of every interaction, indptr (n_users + 1) the CSR row
 * pointers into it (InteractionSet). A user outside [0, n_users) or a playlist outside
 * [0, n_playlists) is no interaction. A binary search in the user's own row (a few dozen
 * keys) instead of all of them: a few cache misses instead of ~20. */
void csr_contains(const int64_t *keys, const int64_t *indptr, int64_t n_users, int64_t n_playlists,
                  const int64_t *users, const int64_t *playlists, int64_t n, uint8_t *out) {
    for (int64_t t = 0; t < n; ++t) {
        /* two-stage prefetch: the row pointers 32 pairs ahead, the row's keys 16 ahead */
        if (t + 32 < n && users[t + 32] >= 0 && users[t + 32] < n_users) __builtin_prefetch(indptr + users[t + 32]);
        if (t + 16 < n && users[t + 16] >= 0 && users[t + 16] < n_users) {
            int64_t lo = indptr[users[t + 16]], hi = indptr[users[t + 16] + 1];
            if (lo < hi) {
                __builtin_prefetch(keys + lo);
                __builtin_prefetch(keys + lo + ((hi - lo) >> 1));
                __builtin_prefetch(keys + hi - 1);
            }
        }
        int64_t u = users[t], p = playlists[t];
        out[t] = (u >= 0 && u < n_users && p >= 0 && p < n_playlists) ? (uint8_t)is_interaction(keys, indptr,
                                                                                                 n_playlists, u, p)
                                                                      : 0;
    }
}

/* ---- hard negatives ----------------------------------------------------------------- */

/* For n rows (user, positive, fallback, K candidates...) with row stride `stride`, write
 * (user, positive, negative) into out (n, 3): the negative is, of the `top` candidates the
 * current weights score highest (<w_u, h_c> + b_c; ties: the earlier column), the best that
 * is not an interaction, else the fallback (BPRModule.mine). Returns 0, or -1 - t for the
 * first row t with an id out of range. */
static int64_t mine_rows(const float *W, const float *H, const float *b, int64_t d, const int64_t *rows,
                         int64_t stride, int64_t n, int64_t K, int64_t top, const int64_t *keys,
                         const int64_t *indptr, int64_t n_users, int64_t n_playlists, int64_t *out) {
    float scores[256];
    int64_t order[256];
    if (K > 256) K = 256;
    if (top > K) top = K;
    for (int64_t t = 0; t < n; ++t) {
        const int64_t *r = rows + t * stride;
        if (r[0] < 0 || r[0] >= n_users || r[1] < 0 || r[1] >= n_playlists || r[2] < 0 || r[2] >= n_playlists)
            return -1 - t;
        for (int64_t k = 0; k < K; ++k)
            if (r[3 + k] < 0 || r[3 + k] >= n_playlists) return -1 - t;
    }
    for (int64_t t = 0; t < n; ++t) {
        if (t + MINE_PREFETCH < n) {  /* the rows of MINE_PREFETCH rows ahead */
            const int64_t *p = rows + (t + MINE_PREFETCH) * stride;
            prefetch_row(W + p[0] * d, d, 0);
            for (int64_t k = 0; k < K; ++k) prefetch_row(H + p[3 + k] * d, d, 0);
        }
        const int64_t *r = rows + t * stride;
        const float *w = W + r[0] * d;
        for (int64_t k = 0; k < K; ++k) {
            const float *h = H + r[3 + k] * d;
            float acc[LANES] = {0};
            int64_t f = 0;
            for (; f + LANES <= d; f += LANES)
                for (int l = 0; l < LANES; ++l) acc[l] += w[f + l] * h[f + l];
            float s = 0.0f;
            for (int l = 0; l < LANES; ++l) s += acc[l];
            for (; f < d; ++f) s += w[f] * h[f];
            scores[k] = s + b[r[3 + k]];
        }
        /* the `top` best, best first (selection; K is small) */
        for (int64_t k = 0; k < K; ++k) order[k] = k;
        int64_t negative = r[2];
        for (int64_t q = 0; q < top; ++q) {
            int64_t best = q;
            for (int64_t k = q + 1; k < K; ++k)
                if (scores[order[k]] > scores[order[best]] ||
                    (scores[order[k]] == scores[order[best]] && order[k] < order[best]))
                    best = k;
            int64_t tmp = order[q]; order[q] = order[best]; order[best] = tmp;
            int64_t c = r[3 + order[q]];
            if (!is_interaction(keys, indptr, n_playlists, r[0], c)) { negative = c; break; }
        }
        out[3 * t] = r[0];
        out[3 * t + 1] = r[1];
        out[3 * t + 2] = negative;
    }
    return 0;
}

/* n rows (row stride `stride` int64s, the triplet in the first three columns) as
 * consecutive minibatches of `batch` rows (the last one may be shorter), each applied as
 * batch_update does. W (n_users, d), H (n_playlists, d), b (n_playlists,) float32,
 * C-contiguous; scratch holds 3*batch*d + batch floats. With K > 0 the rows are hard-mining
 * rows (user, positive, fallback, K candidates) and each minibatch's negatives are mined
 * (mine_rows, `top`, membership in keys/indptr) with the weights as they are before it,
 * into mined (3 * batch int64s). Returns the summed loss, or a negative value -1 - t
 * (t: the first bad row) when an id is out of range; minibatches before the bad one have
 * been applied. */
double bpr_sgd_minibatches(float *W, float *H, float *b, int64_t d, const int64_t *rows, int64_t stride,
                           int64_t n, int64_t batch, float lr, float reg, float *scratch, int64_t n_users,
                           int64_t n_playlists, int64_t K, int64_t top, const int64_t *keys, const int64_t *indptr,
                           int64_t *mined) {
    double total = 0.0;
    for (int64_t start = 0; start < n; start += batch) {
        int64_t m = n - start < batch ? n - start : batch;
        const int64_t *part = rows + start * stride;
        int64_t part_stride = stride;
        if (K > 0) {
            int64_t bad = mine_rows(W, H, b, d, part, stride, m, K, top, keys, indptr, n_users, n_playlists, mined);
            if (bad < 0) return (double)bad - (double)start;
            part = mined;
            part_stride = 3;
        }
        double loss = batch_update(W, H, b, d, part, part_stride, m, lr, reg, scratch, n_users, n_playlists);
        if (loss < 0.0) return loss - (double)start;
        total += loss;
    }
    return total;
}
