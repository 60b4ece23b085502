/* medselect/checkpoint.h: saving and loading a trained selector (arch.h) as safetensors.
 *
 * Any architecture: its tensors under the names of its tensor table (arch.h), metadata
 * "arch" naming it (a file without "arch" is a bilstm: older files load unchanged), D and H.
 * A bilstm file holds the ten float32 tensors under PyTorch's state_dict names
 *     LSTM.weight_ih_l0 (4H, D)  LSTM.weight_hh_l0 (4H, H)  LSTM.bias_ih_l0 (4H)
 *     LSTM.bias_hh_l0 (4H)       the same four with the suffix _reverse
 *     linear.weight (1, 2H)      linear.bias (1)
 * so that, in Python,
 *     model.load_state_dict(safetensors.torch.load_file(path))
 * works unchanged for a module with attributes LSTM = nn.LSTM(D, H, bidirectional=True,
 * batch_first=True) and linear = nn.Linear(2H, 1). The __metadata__ block (strings only):
 *     format     "medselect-selector"
 *     version    "1" (this layout)
 *     arch       the architecture ("bilstm", "relational", "setattn"; missing: bilstm)
 *     D, H       input and hidden sizes (also implied by the shapes)
 *     clinical   "1" when the inputs carry the 3 clinical features, else "0"
 *     clinical_order  with clinical "1": the order of the 3 clinical input columns after
 *                the embedding, "sex,age,frontal" (MS_CLIN_ORDER, train.h, the authors' order)
 *     K          the label budget the selector was trained for
 *     sampler    "without-replacement" or "multinomial" (policy.h)
 *     seed       the training seed
 *     data       free-form fingerprints of the training data
 *     medselect  the medselect version that wrote the file
 * plus any further key/value pairs the caller adds (kept as "extra" on load).
 * A file with only the tensors (e.g. saved from PyTorch) loads too: D and H come from the
 * shapes, the rest is unknown (whether the input has clinical columns is then decided by the
 * caller, from the data's D; see ms_selector_resolve_clinical).
 *
 * Clinical order on load: the input-weight columns of the clinical features (the last 3
 * columns of LSTM.weight_ih_l0 and of its _reverse) are permuted into MS_CLIN_ORDER, so the
 * loaded parameters always expect [sex, age, frontal]. The file's order is its
 * clinical_order when present; a medselect file with clinical "1" but no clinical_order
 * predates the key and used [age, sex, frontal]; any other file (tensors only, or the
 * authors' code through tools/convert_checkpoint.py) is taken to be in the authors' order.
 * A missing tensor, a tensor of the wrong shape or dtype, or
 * an unexpected tensor gives MS_ERR_DATA with a message naming the file and the tensor.
 */
#ifndef MEDSELECT_CHECKPOINT_H
#define MEDSELECT_CHECKPOINT_H

#include "medselect/common.h"
#include "medselect/arch.h"
#include "medselect/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_SELECTOR_FORMAT "medselect-selector"
#define MS_SELECTOR_FORMAT_VERSION 1

typedef struct {
    int D, H;             /* on load: from the tensor shapes; on save: ignored (from params) */
    int clinical;         /* 1 / 0; -1 unknown (not written) */
    int K;                /* > 0; -1 unknown (not written) */
    char sampler[32];     /* "" unknown (not written) */
    int has_seed;         /* 0: seed unknown (not written) */
    uint64_t seed;
    char *data;           /* data fingerprints, owned; NULL unknown (not written) */
    char *medselect;      /* on load: the writer's medselect version, owned; NULL unknown.
                             On save: ignored (MS_VERSION is written) */
    int format_version;   /* on load: 1, or 0 for a file without medselect metadata */
    char clinical_order[32]; /* on load: the clinical column order the file holds (after
                                the rules above; "" when the input is not clinical or not
                                known to be). On save: ignored (MS_CLIN_ORDER is written) */
    int clinical_permuted;   /* on load: 1 when the columns were reordered into MS_CLIN_ORDER */
    int n_extra;          /* further metadata, owned */
    char **extra_key, **extra_val;
} ms_selector_meta;

/* All fields unknown, no extras. */
void ms_selector_meta_init(ms_selector_meta *m);
void ms_selector_meta_free(ms_selector_meta *m);
/* Sets (or replaces) the data fingerprint string (copied). */
void ms_selector_meta_set_data(ms_selector_meta *m, const char *data);
/* Adds or replaces an extra key/value pair (both copied). Keys of the standard fields are
 * not allowed here (a programmer error). */
void ms_selector_meta_set_extra(ms_selector_meta *m, const char *key, const char *value);
/* The value of an extra key, or NULL. */
const char *ms_selector_meta_extra(const ms_selector_meta *m, const char *key);

/* Writes a selector of any architecture (m may be NULL). */
ms_status ms_net_save(const char *path, const ms_net *net, const ms_selector_meta *m);
/* Reads a selector of any architecture into net (initialised here; ms_net_free it) and m
 * (may be NULL). On failure net and m are left empty. */
ms_status ms_net_load(const char *path, ms_net *net, ms_selector_meta *m);

/* Whether a loaded selector takes clinical inputs, for data with data_d-dimensional
 * embeddings: the metadata's clinical flag when the file has one; for a file without it,
 * clinical when p_d == data_d + 3 (the "tensors-only" case). force (--clinical) demands
 * clinical inputs. Sets *clinical; a contradiction (force against clinical "0", or an input
 * size that fits neither) is MS_ERR_DATA naming `path` and data_name (the data's file). When the decision is clinical for a
 * file whose order was unknown, m is updated as if the file had said so (the columns are
 * already in the authors' order, which is MS_CLIN_ORDER). */
ms_status ms_selector_resolve_clinical(const char *path, ms_selector_meta *m, int p_d,
                                       const char *data_name, int data_d, int force, int *clinical);

/* The bilstm only (a file of another architecture is an MS_ERR_DATA).
 * Writes p (and m's known fields; m may be NULL) to path atomically. */
ms_status ms_checkpoint_save(const char *path, const ms_lstm_params *p, const ms_selector_meta *m);
/* Reads a selector. p is initialised here (free it with ms_lstm_params_free); m (may be
 * NULL) is initialised and filled. On failure p and m are left empty. F64 tensors are
 * accepted and converted to float. */
ms_status ms_checkpoint_load(const char *path, ms_lstm_params *p, ms_selector_meta *m);

#ifdef __cplusplus
}
#endif
#endif
