/* medselect/predictor.h: the non-parametric classifier of MedSelect.
 *
 * Given K selected pool items with their true labels, a query image q scores
 *   cosine:    mean_{s in S+} cos(q, s) - mean_{s in S-} cos(q, s)
 *   euclidean: mean_{s in S-} |q - s|  - mean_{s in S+} |q - s|
 * where an empty class contributes 0. Higher means "more likely positive".
 */
#ifndef MEDSELECT_PREDICTOR_H
#define MEDSELECT_PREDICTOR_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MS_PRED_COSINE = 0, MS_PRED_EUCLIDEAN = 1 } ms_pred_kind;

/* scores: (Q) out. qry: (Q, D). sel: (K, D). sel_y: (K) 0/1.
 * For cosine, rows of qry and sel must already be L2-normalised (ms_split.unit); the
 * similarities are one sgemm (Q, D) x (D, K). For euclidean pass raw rows; distances come
 * from the same product via |q|^2 + |s|^2 - 2 q.s. work: Q*K + Q + K floats. */
void ms_predict(float *scores, const float *qry, int Q, const float *sel, const uint8_t *sel_y,
                int K, int D, ms_pred_kind kind, float *work);
/* The plain kernel: double-precision loops over pairs; the reference for tests. */
void ms_predict_ref(double *scores, const float *qry, int Q, const float *sel,
                    const uint8_t *sel_y, int K, int D, ms_pred_kind kind);
ms_status ms_pred_kind_parse(const char *s, ms_pred_kind *out);

#ifdef __cplusplus
}
#endif
#endif
