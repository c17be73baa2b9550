/* The Winograd F(4, 3) kernel-3 conv (model/nn_wino.c) against the direct one (one GEMM
 * over the three shifted views, itself checked against PyTorch in test_reference):
 *
 * - every valid output within a bound on rounding: |wino - direct| <= TOL * eps * S,
 *   where S = sum over the 3 cin terms of |w| |x| (the size of the sum's terms; its
 *   cancellation is what rounding cannot beat). Measured: at most ~10.4 eps S; a wrong
 *   transform entry gives errors of order S;
 * - gaps left zero, bias and residual (also the residual being the output itself);
 * - lengths around the transforms' vector blocks (8 tiles = 32 columns) and partial last
 *   tiles, batches, many blocks of tiles (handed out to the threads; blocks ending inside
 *   an example);
 * - a per-example row term (the ResBlock's time embedding) added in the output transform
 *   giving the same bits as adding it afterwards;
 * - the up-conv (nearest x2 upsampling then the conv, by the two phases' filters) against
 *   the direct conv of the upsampled input, within the same bound; its packed weights and
 *   the batch and thread count not changing its bits;
 * - an example's output the same, bit for bit, alone or in a batch (at any place), and on
 *   1 or 2 threads; and the automatic choice independent of the batch. */
#include "nf_nn.h"
#include "nf_rng.h"
#include "nf_test.h"
#include "nf_unet.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nf_wino_force(int mode);
/* Testing hook in model/nn_wino.c: the transforms' path, 0 automatic, 1 scalar, 2 AVX2,
 * 3 AVX-512 (0 if this CPU does not run it). */
int nf_wino_force_path(int path);
static int g_path_checks; /* comparisons of a forced transform path with the automatic one */

#define TOL 32.0

/* A zero-gapped input of C rows in layout s, values from seed. */
static float *make_input(int C, nf_seq s, uint64_t seed)
{
    size_t ld = nf_seq_ld(s);
    float *x = malloc((size_t)C * ld * sizeof(float));
    nf_randn(x, (size_t)C * ld, seed, 1, 0);
    nf_seq_zero_gaps(x, C, s);
    return x;
}

typedef enum { RES_NONE, RES_OTHER, RES_SELF } res_mode;

/* out = conv3(x) (+ bias) (+ residual) by the direct (mode 1) or Winograd (mode 2) path. */
static float *conv(int mode, const float *x, nf_seq s, const float *w, const float *bias, int cin, int cout,
                   res_mode rm, const float *r)
{
    size_t ld = nf_seq_ld(s);
    float *out = malloc((size_t)cout * ld * sizeof(float));
    for (size_t i = 0; i < (size_t)cout * ld; i++) out[i] = rm == RES_SELF ? r[i] : NAN; /* NaN: must be written */
    nf_conv_dims d = {cin, cout, 3, 1, 1, 1};
    nf_wino_force(mode);
    CHECK(mode != 2 || nf_wino_applies(d, s, s), "%s", "forced Winograd refused a kernel-3 same conv");
    nf_conv1d_forward(out, s, NULL, NULL, x, s, w, bias, rm == RES_NONE ? NULL : rm == RES_SELF ? out : r, d);
    nf_wino_force(0);
    return out;
}

static double g_worst; /* largest |wino - direct| / (eps S) seen */

/* The valid outputs of yw farther from the direct conv's yd than TOL eps S, S the sum of
 * the magnitudes of the output's terms: the 3 cin products w x of input x (layout s,
 * zero outside the example), bias and residual r. Sets *worst to the largest error in
 * units of eps S (and g_worst) and, if gaps is not NULL, counts the nonzero gap columns
 * of yw beside each example. */
static int off_bound(const float *yw, const float *yd, const float *x, nf_seq s, const float *w, const float *bias,
                     const float *r, int cin, int cout, double *worst, int *gaps)
{
    size_t ld = nf_seq_ld(s);
    int bad = 0;
    for (int co = 0; co < cout; co++)
        for (int b = 0; b < s.B; b++)
            for (int p = -1; p <= s.L; p++) {
                size_t i = (size_t)co * ld + (size_t)b * s.S + s.off + p;
                if (p < 0 || p == s.L) {
                    if (gaps && yw[i] != 0.0f) (*gaps)++;
                    continue;
                }
                double S = 0.0;
                for (int ci = 0; ci < cin; ci++)
                    for (int t = 0; t < 3; t++) {
                        int q = p + t - 1;
                        double xv = q < 0 || q >= s.L ? 0.0 : x[(size_t)ci * ld + (size_t)b * s.S + s.off + q];
                        S += fabs(w[((size_t)co * cin + ci) * 3 + t] * xv);
                    }
                if (bias) S += fabs(bias[co]);
                if (r) S += fabs(r[i]);
                double err = fabs((double)yw[i] - yd[i]), lim = TOL * FLT_EPSILON * S + 1e-30;
                if (!(err <= lim)) bad++;
                if (err / (FLT_EPSILON * S + 1e-30) > *worst) *worst = err / (FLT_EPSILON * S + 1e-30);
            }
    if (*worst > g_worst) g_worst = *worst;
    return bad;
}

static void check_case(int B, int L, int cin, int cout, int with_bias, res_mode rm, uint64_t seed)
{
    nf_seq s = nf_seq_make(B, L);
    float *x = make_input(cin, s, seed);
    float *w = malloc((size_t)cout * cin * 3 * sizeof(float));
    nf_randn(w, (size_t)cout * cin * 3, seed + 1, 1, 0);
    float *bias = NULL, *r = NULL;
    if (with_bias) {
        bias = malloc((size_t)cout * sizeof(float));
        nf_randn(bias, (size_t)cout, seed + 2, 1, 0);
    }
    if (rm != RES_NONE) r = make_input(cout, s, seed + 3);
    float *yd = conv(1, x, s, w, bias, cin, cout, rm, r);
    float *yw = conv(2, x, s, w, bias, cin, cout, rm, r);
    int gaps = 0;
    double worst = 0.0;
    int bad = off_bound(yw, yd, x, s, w, bias, r, cin, cout, &worst, &gaps);
    CHECK(bad == 0, "B %d L %d cin %d cout %d bias %d res %d: %d outputs off (worst %.1f eps S)", B, L, cin, cout,
          with_bias, (int)rm, bad, worst);
    CHECK(gaps == 0, "B %d L %d: %d gap columns not zero", B, L, gaps);
    /* The transforms' scalar, AVX2 and AVX-512 paths: the same bits. */
    for (int p = 1; p <= 3; p++) {
        if (!nf_wino_force_path(p)) continue;
        float *yp = conv(2, x, s, w, bias, cin, cout, rm, r);
        nf_wino_force_path(0);
        CHECK(memcmp(yp, yw, (size_t)cout * nf_seq_ld(s) * sizeof(float)) == 0,
              "B %d L %d cin %d cout %d: transform path %d changes the bits", B, L, cin, cout, p);
        g_path_checks++;
        free(yp);
    }
    free(x), free(w), free(bias), free(r), free(yd), free(yw);
}

/* Example b of a batch of B, computed alone and in the batch: the same bits. */
static void check_batch_independent(int B, int L, int cin, int cout)
{
    nf_seq s = nf_seq_make(B, L), s1 = nf_seq_make(1, L);
    size_t ld = nf_seq_ld(s), ld1 = nf_seq_ld(s1);
    float *x = make_input(cin, s, 77);
    float *w = malloc((size_t)cout * cin * 3 * sizeof(float)), *bias = malloc((size_t)cout * sizeof(float));
    nf_randn(w, (size_t)cout * cin * 3, 78, 1, 0);
    nf_randn(bias, (size_t)cout, 79, 1, 0);
    nf_set_threads(2);
    float *yb = conv(2, x, s, w, bias, cin, cout, RES_NONE, NULL);
    int diff = 0;
    for (int b = 0; b < B; b++) {
        float *x1 = malloc((size_t)cin * ld1 * sizeof(float));
        for (int ci = 0; ci < cin; ci++)
            memcpy(x1 + (size_t)ci * ld1, x + (size_t)ci * ld + (size_t)b * s.S, (size_t)s.S * sizeof(float));
        for (int nt = 1; nt <= 2; nt++) {
            nf_set_threads(nt);
            float *y1 = conv(2, x1, s1, w, bias, cin, cout, RES_NONE, NULL);
            for (int co = 0; co < cout; co++)
                diff += memcmp(y1 + (size_t)co * ld1 + s1.off, yb + (size_t)co * ld + (size_t)b * s.S + s.off,
                               (size_t)L * sizeof(float)) != 0;
            free(y1);
        }
        free(x1);
    }
    CHECK(diff == 0, "B %d L %d cin %d cout %d: %d rows differ alone / in the batch / by thread count", B, L, cin,
          cout, diff);
    free(x), free(w), free(bias), free(yb);
}

/* nf_wino_conv3 with row_add E[b][co]: the same bits as without, then E added to each
 * valid column (after bias and residual, as the ResBlock did). */
static void check_row_add(int B, int L, int cin, int cout, int threads)
{
    nf_seq s = nf_seq_make(B, L);
    size_t ld = nf_seq_ld(s);
    float *x = make_input(cin, s, 120), *r = make_input(cout, s, 121);
    float *w = malloc((size_t)cout * cin * 3 * sizeof(float)), *bias = malloc((size_t)cout * sizeof(float));
    float *E = malloc((size_t)B * cout * sizeof(float));
    nf_randn(w, (size_t)cout * cin * 3, 122, 1, 0);
    nf_randn(bias, (size_t)cout, 123, 1, 0);
    nf_randn(E, (size_t)B * cout, 124, 1, 0);
    float *y1 = calloc((size_t)cout * ld, sizeof(float)), *y2 = calloc((size_t)cout * ld, sizeof(float));
    nf_set_threads(threads);
    CHECK(nf_wino_conv3(y1, x, s, w, bias, r, E, cin, cout) == 0, "%s", "nf_wino_conv3 with row_add failed");
    CHECK(nf_wino_conv3(y2, x, s, w, bias, r, NULL, cin, cout) == 0, "%s", "nf_wino_conv3 failed");
    for (int co = 0; co < cout; co++)
        for (int b = 0; b < B; b++)
            for (int l = 0; l < L; l++) y2[(size_t)co * ld + (size_t)b * s.S + s.off + l] += E[(size_t)b * cout + co];
    CHECK(memcmp(y1, y2, (size_t)cout * ld * sizeof(float)) == 0,
          "B %d L %d cin %d cout %d: row_add differs from adding after", B, L, cin, cout);
    nf_set_threads(1);
    free(x), free(r), free(w), free(bias), free(E), free(y1), free(y2);
}

/* nf_wino_upconv3 against the direct conv of the upsampled input: every output within
 * the rounding bound (S over the upsampled input's terms); the same bits with its phase
 * weights packed once, and for an example alone or in the batch, on 1 or 2 threads. */
static void check_up(int B, int Lin, int Lout, int cin, int cout)
{
    nf_seq si = nf_seq_make(B, Lin), so = nf_seq_make(B, Lout);
    size_t ldi = nf_seq_ld(si), ldo = nf_seq_ld(so);
    float *x = make_input(cin, si, 130);
    float *w = malloc((size_t)cout * cin * 3 * sizeof(float)), *bias = malloc((size_t)cout * sizeof(float));
    nf_randn(w, (size_t)cout * cin * 3, 131, 1, 0);
    nf_randn(bias, (size_t)cout, 132, 1, 0);
    float *u = calloc((size_t)cin * ldo, sizeof(float));
    nf_upsample_forward(u, so, x, si, cin);
    float *yd = conv(1, u, so, w, bias, cin, cout, RES_NONE, NULL);
    CHECK(nf_wino_upconv3_applies(cin, cout, si, so), "B %d Lin %d cin %d cout %d: up-conv refused", B, Lin, cin, cout);
    float *yw = malloc((size_t)cout * ldo * sizeof(float));
    for (size_t i = 0; i < (size_t)cout * ldo; i++) yw[i] = NAN;
    nf_set_threads(2);
    CHECK(nf_wino_upconv3(yw, so, x, si, w, bias, cin, cout) == 0, "%s", "nf_wino_upconv3 failed");
    nf_seq_zero_gaps(yw, cout, so);
    double worst = 0.0;
    int bad = off_bound(yw, yd, u, so, w, bias, NULL, cin, cout, &worst, NULL);
    CHECK(bad == 0, "up B %d Lin %d Lout %d cin %d cout %d: %d outputs off (worst %.1f eps S)", B, Lin, Lout, cin,
          cout, bad, worst);
    /* Phase weights packed once: the same bits. */
    float *pk = aligned_alloc(64, nf_wino_up_packed_floats(cout, cin) * sizeof(float));
    float *yp = calloc((size_t)cout * ldo, sizeof(float));
    CHECK(nf_wino_up_pack(w, cout, cin, pk) == 0 && nf_packed_register(NF_PACKED_WINO_UP, w, cout, cin, pk),
          "%s", "packing the up-conv's weights failed");
    CHECK(nf_wino_upconv3(yp, so, x, si, w, bias, cin, cout) == 0, "%s", "nf_wino_upconv3 (packed) failed");
    nf_seq_zero_gaps(yp, cout, so);
    CHECK(memcmp(yp, yw, (size_t)cout * ldo * sizeof(float)) == 0, "up B %d Lin %d: packed weights change the bits", B,
          Lin);
    nf_gemm_unregister_packed(pk, nf_wino_up_packed_floats(cout, cin));
    /* The transforms' scalar, AVX2 and AVX-512 paths: the same bits. */
    for (int p = 1; p <= 3; p++) {
        if (!nf_wino_force_path(p)) continue;
        CHECK(nf_wino_upconv3(yp, so, x, si, w, bias, cin, cout) == 0, "%s", "nf_wino_upconv3 failed");
        nf_wino_force_path(0);
        nf_seq_zero_gaps(yp, cout, so);
        CHECK(memcmp(yp, yw, (size_t)cout * ldo * sizeof(float)) == 0, "up B %d Lin %d: transform path %d changes the bits",
              B, Lin, p);
        g_path_checks++;
    }
    /* Each example alone, on 1 and 2 threads: the same bits as in the batch. */
    nf_seq si1 = nf_seq_make(1, Lin), so1 = nf_seq_make(1, Lout);
    size_t ldi1 = nf_seq_ld(si1), ldo1 = nf_seq_ld(so1);
    float *x1 = malloc((size_t)cin * ldi1 * sizeof(float)), *y1 = calloc((size_t)cout * ldo1, sizeof(float));
    int diff = 0;
    for (int b = 0; b < B; b++) {
        for (int ci = 0; ci < cin; ci++)
            memcpy(x1 + (size_t)ci * ldi1, x + (size_t)ci * ldi + (size_t)b * si.S, (size_t)si.S * sizeof(float));
        for (int nt = 1; nt <= 2; nt++) {
            nf_set_threads(nt);
            CHECK(nf_wino_upconv3(y1, so1, x1, si1, w, bias, cin, cout) == 0, "%s", "nf_wino_upconv3 failed");
            for (int co = 0; co < cout; co++)
                diff += memcmp(y1 + (size_t)co * ldo1 + so1.off, yw + (size_t)co * ldo + (size_t)b * so.S + so.off,
                               (size_t)Lout * sizeof(float)) != 0;
        }
    }
    CHECK(diff == 0, "up B %d Lin %d: %d rows differ alone / in the batch / by thread count", B, Lin, diff);
    nf_set_threads(1);
    free(x), free(w), free(bias), free(u), free(yd), free(yw), free(pk), free(yp), free(x1), free(y1);
}

int main(void)
{
    /* Lengths around the 32- and 64-column vector blocks and the 4-column tiles. */
    static const int lens[] = {1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 34, 35, 36, 37, 63, 64, 65, 66, 67, 68, 100, 127, 128,
                               129, 130, 131};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        check_case(1, lens[i], 5, 7, 1, RES_NONE, 10 + i);
        check_case(3, lens[i], 17, 4, i & 1, (res_mode)(i % 3), 40 + i);
    }
    check_case(2, 300, 32, 48, 1, RES_SELF, 90);
    check_case(1, 1000, 64, 16, 0, RES_OTHER, 91);
    /* Many blocks (at least six per thread): 3 x 4096 tiles, blocks ending inside
     * examples. */
    check_case(3, 16384, 16, 16, 1, RES_OTHER, 92);
    printf("worst error: %.2f eps S (bound %.0f)\n", g_worst, TOL);

    check_batch_independent(4, 37, 16, 16);
    check_batch_independent(3, 16384, 16, 16); /* blocks ending inside examples */
    check_row_add(3, 300, 16, 24, 2);
    /* The up-conv: lengths around the vector blocks, several blocks per example. */
    check_up(1, 126, 252, 16, 16);
    check_up(1, 126, 251, 16, 16); /* odd output length: the last sample has no w2 term */
    check_up(1, 256, 512, 16, 16);
    check_up(2, 293, 586, 24, 16);
    check_up(2, 251, 501, 24, 16);
    check_up(3, 1000, 2000, 16, 32);
    check_row_add(2, 1000, 32, 16, 1);

    /* The automatic choice: the layer and the example's length, never the batch. */
    nf_conv_dims d = {16, 16, 3, 1, 1, 1};
    for (int B = 1; B <= 9; B += 4) {
        CHECK(nf_wino_applies(d, nf_seq_make(B, 192), nf_seq_make(B, 192)), "B %d, L 192: Winograd", B);
        CHECK(!nf_wino_applies(d, nf_seq_make(B, 191), nf_seq_make(B, 191)), "B %d, L 191: direct", B);
    }
    for (int B = 1; B <= 9; B += 4) {
        CHECK(nf_wino_upconv3_applies(16, 16, nf_seq_make(B, 96), nf_seq_make(B, 192)), "up B %d, Lin 96: Winograd", B);
        CHECK(!nf_wino_upconv3_applies(16, 16, nf_seq_make(B, 95), nf_seq_make(B, 190)), "up B %d, Lin 95: not", B);
    }
    CHECK(nf_wino_upconv3_applies(16, 16, nf_seq_make(1, 200), nf_seq_make(1, 399)), "%s", "up to 2 Lin - 1: Winograd");
    CHECK(!nf_wino_upconv3_applies(16, 16, nf_seq_make(1, 200), nf_seq_make(1, 398)), "%s", "up to 2 Lin - 2: not");
    CHECK(!nf_wino_upconv3_applies(8, 16, nf_seq_make(1, 200), nf_seq_make(1, 400)), "%s", "up, 8 inputs: not");
    nf_seq tight = {1, 399, 400, 1}; /* no zero column after the output */
    CHECK(!nf_wino_upconv3_applies(16, 16, nf_seq_make(1, 200), tight), "%s", "up into a layout without a gap: not");
    nf_conv_dims narrow = {8, 16, 3, 1, 1, 1}, strided = {16, 16, 3, 2, 1, 1}, dil = {16, 16, 3, 1, 2, 2};
    CHECK(!nf_wino_applies(narrow, nf_seq_make(1, 4096), nf_seq_make(1, 4096)), "%s", "8 input channels: direct");
    CHECK(!nf_wino_applies(strided, nf_seq_make(1, 4096), nf_seq_make(1, 2048)), "%s", "stride 2: direct");
    CHECK(!nf_wino_applies(dil, nf_seq_make(1, 4096), nf_seq_make(1, 4096)), "%s", "dilation 2: direct");
    CHECK(g_path_checks > 0, "%s", "no transform path compared");
    printf("transform paths: %d comparisons with the automatic one\n", g_path_checks);
    return nf_test_done();
}
