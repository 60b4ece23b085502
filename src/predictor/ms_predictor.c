/* ms_predictor.c: MedSelect's non-parametric classifier (see predictor.h). The K selected
 * items and their labels become two prototypes; every query row is compared with every
 * selected row in one GEMM, then the similarities are averaged per class. */
#include "medselect/predictor.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "medselect/gemm.h"

/* sq[i] = |x_i|^2 for the n rows of x (n, D), accumulated in double. */
static void rows_sqnorm(float *sq, const float *x, int n, int D) {
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * D;
        double acc = 0.0;
        for (int j = 0; j < D; j++) acc += (double)r[j] * r[j];
        sq[i] = (float)acc;
    }
}

void ms_predict(float *scores, const float *qry, int Q, const float *sel, const uint8_t *sel_y,
                int K, int D, ms_pred_kind kind, float *work) {
    MS_CHECK(Q > 0 && K > 0 && D > 0);
    float *sim = work;          /* (Q, K): sim[q][k] = qry[q] . sel[k] */
    float *qn = work + (size_t)Q * K; /* (Q) squared norms, euclidean only */
    float *sn = qn + Q;               /* (K) */
    ms_gemm('N', 'T', Q, K, D, 1.0f, qry, D, sel, D, 0.0f, sim, K, MS_PREC_F32);
    int npos = 0;
    for (int k = 0; k < K; k++) npos += sel_y[k] != 0;
    int nneg = K - npos;
    /* weights: +1/npos for positives, -1/nneg for negatives (an empty class contributes 0) */
    float wpos = npos ? 1.0f / (float)npos : 0.0f, wneg = nneg ? 1.0f / (float)nneg : 0.0f;
    if (kind == MS_PRED_COSINE) {
        for (int q = 0; q < Q; q++) {
            const float *row = sim + (size_t)q * K;
            float sp = 0, sm = 0;
            for (int k = 0; k < K; k++) {
                if (sel_y[k]) sp += row[k];
                else sm += row[k];
            }
            scores[q] = sp * wpos - sm * wneg;
        }
        return;
    }
    MS_CHECK(kind == MS_PRED_EUCLIDEAN);
    rows_sqnorm(qn, qry, Q, D);
    rows_sqnorm(sn, sel, K, D);
    for (int q = 0; q < Q; q++) {
        const float *row = sim + (size_t)q * K;
        float sp = 0, sm = 0;
        for (int k = 0; k < K; k++) {
            float d2 = qn[q] + sn[k] - 2.0f * row[k];
            float dist = sqrtf(d2 > 0 ? d2 : 0);
            if (sel_y[k]) sp += dist;
            else sm += dist;
        }
        /* far from the negatives and near the positives scores high */
        scores[q] = sm * wneg - sp * wpos;
    }
}

void ms_predict_ref(double *scores, const float *qry, int Q, const float *sel,
                    const uint8_t *sel_y, int K, int D, ms_pred_kind kind) {
    for (int q = 0; q < Q; q++) {
        double sp = 0, sm = 0;
        int np = 0, nm = 0;
        for (int k = 0; k < K; k++) {
            double v = 0;
            if (kind == MS_PRED_COSINE) {
                double dot = 0, a = 0, b = 0;
                for (int j = 0; j < D; j++) {
                    double x = qry[(size_t)q * D + j], y = sel[(size_t)k * D + j];
                    dot += x * y, a += x * x, b += y * y;
                }
                v = (a > 0 && b > 0) ? dot / sqrt(a * b) : 0.0;
            } else {
                double d2 = 0;
                for (int j = 0; j < D; j++) {
                    double x = (double)qry[(size_t)q * D + j] - sel[(size_t)k * D + j];
                    d2 += x * x;
                }
                v = sqrt(d2);
            }
            if (sel_y[k]) sp += v, np++;
            else sm += v, nm++;
        }
        double mp = np ? sp / np : 0.0, mm = nm ? sm / nm : 0.0;
        scores[q] = kind == MS_PRED_COSINE ? mp - mm : mm - mp;
    }
}

ms_status ms_pred_kind_parse(const char *s, ms_pred_kind *out) {
    if (!strcasecmp(s, "cosine")) *out = MS_PRED_COSINE;
    else if (!strcasecmp(s, "euclidean")) *out = MS_PRED_EUCLIDEAN;
    else return ms_fail(MS_ERR_ARG, "unknown predictor '%s' (cosine, euclidean)", s);
    return MS_OK;
}
