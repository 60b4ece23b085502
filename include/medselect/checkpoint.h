/* medselect/checkpoint.h: selector weights on disk as safetensors with PyTorch's names
 * (LSTM.weight_ih_l0 [4H x D], LSTM.weight_hh_l0 [4H x H], LSTM.bias_ih_l0 [4H],
 * LSTM.bias_hh_l0 [4H], the same with _reverse, linear.weight [1 x 2H], linear.bias [1]), so
 * that `LSTMSelector.load_state_dict(safetensors.torch.load_file(path))` of the reference
 * code loads a medselect checkpoint unchanged, and a state_dict saved by a PyTorch user loads
 * here: D and H come from the shapes; a "module." prefix (DataParallel) is accepted.
 *
 * __metadata__ (all strings): format "medselect-selector", medselect_version, D, H,
 * clinical ("0"/"1"), k, sampler, seed, data (fingerprints of the training data).
 */
#ifndef MEDSELECT_CHECKPOINT_H
#define MEDSELECT_CHECKPOINT_H

#include "medselect/model.h"
#include "medselect/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int D, H;          /* selector input size (embedding dim [+3]) and hidden size */
    int clinical;      /* the last 3 inputs are clinical features */
    int k;             /* K used in training (0: unknown) */
    ms_sampler sampler;
    uint64_t seed;
    char fingerprint[128];
    char version[32];  /* medselect version that wrote it ("" for foreign files) */
    int has_meta;      /* the file carried medselect metadata */
} ms_checkpoint_meta;

/* Writes params with meta atomically. meta->D/H are taken from params. */
ms_status ms_checkpoint_save(const char *path, const ms_lstm_params *p, const ms_checkpoint_meta *meta);
/* Loads into p (initialised here; free with ms_lstm_params_free) and meta. Missing or
 * misshapen tensors, non-F32 data, truncated or foreign files: MS_ERR_DATA naming the file
 * and the tensor. */
ms_status ms_checkpoint_load(const char *path, ms_lstm_params *p, ms_checkpoint_meta *meta);

#ifdef __cplusplus
}
#endif
#endif
