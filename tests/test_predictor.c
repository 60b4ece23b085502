/* test_predictor.c: the cosine/euclidean prototype classifier against scikit-learn values
 * (tests/fixtures/gen_predictor.py), the plain kernel against the BLAS one, and AUROC of the
 * scores against roc_auc_score. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "medselect/metrics.h"
#include "medselect/predictor.h"
#include "ms_test.h"

static float *to_f(const double *x, size_t n) {
    float *f = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

static void normalize_rows(float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < d; j++) x[i * d + j] *= inv;
    }
}

int main(void) {
    for (int c = 0; c < 5; c++) {
        char name[64];
        int nd;
        long sq[4], ss[4], sy[4];
        snprintf(name, sizeof name, "predictor/case%d_q.npy", c);
        double *qd = ms_load_npy_d(ms_fixture(name), &nd, sq);
        snprintf(name, sizeof name, "predictor/case%d_s.npy", c);
        double *sd = ms_load_npy_d(ms_fixture(name), &nd, ss);
        snprintf(name, sizeof name, "predictor/case%d_y.npy", c);
        double *yd = ms_load_npy_d(ms_fixture(name), &nd, sy);
        snprintf(name, sizeof name, "predictor/case%d_qy.npy", c);
        double *qyd = ms_load_npy_d(ms_fixture(name), &nd, NULL);
        snprintf(name, sizeof name, "predictor/case%d_cos.npy", c);
        double *cos_ref = ms_load_npy_d(ms_fixture(name), &nd, NULL);
        snprintf(name, sizeof name, "predictor/case%d_euc.npy", c);
        double *euc_ref = ms_load_npy_d(ms_fixture(name), &nd, NULL);
        snprintf(name, sizeof name, "predictor/case%d_auc.npy", c);
        double *auc_ref = ms_load_npy_d(ms_fixture(name), &nd, NULL);
        int Q = (int)sq[0], D = (int)sq[1], K = (int)ss[0];
        float *q = to_f(qd, (size_t)Q * D), *s = to_f(sd, (size_t)K * D);
        uint8_t *y = malloc((size_t)K), *qy = malloc((size_t)Q);
        for (int i = 0; i < K; i++) y[i] = yd[i] > 0.5;
        for (int i = 0; i < Q; i++) qy[i] = qyd[i] > 0.5;
        float *scores = malloc(sizeof(float) * (size_t)Q);
        float *work = malloc(sizeof(float) * ((size_t)Q * K + Q + K));
        double *ref = malloc(sizeof(double) * (size_t)Q);

        /* euclidean on raw rows */
        ms_predict(scores, q, Q, s, y, K, D, MS_PRED_EUCLIDEAN, work);
        snprintf(name, sizeof name, "case %d euclidean vs sklearn", c);
        float *euc_f = to_f(euc_ref, (size_t)Q);
        ms_expect_close_f(name, scores, euc_f, (size_t)Q, 1e-4, 1e-4);
        ms_predict_ref(ref, q, Q, s, y, K, D, MS_PRED_EUCLIDEAN);
        snprintf(name, sizeof name, "case %d euclidean plain kernel vs sklearn", c);
        ms_expect_close_d(name, ref, euc_ref, (size_t)Q, 1e-9, 1e-9);

        /* cosine: the plain kernel normalises itself, the fast one wants unit rows */
        ms_predict_ref(ref, q, Q, s, y, K, D, MS_PRED_COSINE);
        snprintf(name, sizeof name, "case %d cosine plain kernel vs sklearn", c);
        ms_expect_close_d(name, ref, cos_ref, (size_t)Q, 1e-9, 1e-9);
        normalize_rows(q, Q, D);
        normalize_rows(s, K, D);
        ms_predict(scores, q, Q, s, y, K, D, MS_PRED_COSINE, work);
        float *cos_f = to_f(cos_ref, (size_t)Q);
        snprintf(name, sizeof name, "case %d cosine vs sklearn", c);
        ms_expect_close_f(name, scores, cos_f, (size_t)Q, 2e-6, 1e-5);

        /* an empty class contributes 0: all-positive selections score the mean similarity */
        if (c == 2 || c == 3) {
            double mx = 0;
            for (int i = 0; i < Q; i++) mx = fmax(mx, fabs(cos_ref[i]));
            MS_EXPECT(mx > 0);
        }
        double auc;
        int *aw = malloc(sizeof(int) * 2 * (size_t)Q);
        ms_status st = ms_auroc(scores, qy, Q, &auc, aw);
        MS_EXPECT(st == MS_OK);
        double auc_d[1] = {auc};
        snprintf(name, sizeof name, "case %d AUROC of the scores vs roc_auc_score", c);
        ms_expect_close_d(name, auc_d, auc_ref, 1, 1e-12, 0);
        free(aw);
        free(qd), free(sd), free(yd), free(qyd), free(cos_ref), free(euc_ref), free(auc_ref);
        free(q), free(s), free(y), free(qy), free(scores), free(work), free(ref), free(euc_f), free(cos_f);
    }
    ms_pred_kind k;
    MS_EXPECT(ms_pred_kind_parse("cosine", &k) == MS_OK && k == MS_PRED_COSINE);
    MS_EXPECT(ms_pred_kind_parse("Euclidean", &k) == MS_OK && k == MS_PRED_EUCLIDEAN);
    MS_EXPECT(ms_pred_kind_parse("manhattan", &k) == MS_ERR_ARG);
    return ms_test_summary();
}
