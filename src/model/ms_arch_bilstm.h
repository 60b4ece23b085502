/* ms_arch_bilstm.h: internals of the BiLSTM architecture shared with its tests. */
#ifndef MS_ARCH_BILSTM_H
#define MS_ARCH_BILSTM_H

#include <stddef.h>

/* prepare_rows' memory budget for the split's input-projection table (2 * N * 4H floats),
 * in bytes: 512 MB. Above it prepare_rows declines and the caller scores gathered pools
 * instead (ms_selector.c). A variable only so that tests can take that path on small data;
 * the library never changes it. */
extern size_t ms_bilstm_proj_budget;

#endif
