/* common.h: shared by the libFuzzer harnesses (fuzz/fuzz_*.c). Each harness defines
 * LLVMFuzzerTestOneInput and hands the input to one parser the way the program would: most
 * readers take a path, so the bytes are written to a file in a per-process scratch folder
 * first. The size budget is lowered (MS_MAX_ALLOC_MB, unless set) so that a file may not
 * make a reader allocate more than libFuzzer's memory limit allows: what the budget refuses
 * is a correct refusal, anything else that exhausts memory is a finding. */
#ifndef MS_FUZZ_COMMON_H
#define MS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "medselect/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The per-process scratch folder (created on first use). */
const char *fuzz_dir(void);
/* Writes the bytes to fuzz_dir()/name and returns that path (a static buffer). */
const char *fuzz_write(const char *name, const void *data, size_t size);
/* Sets MS_MAX_ALLOC_MB to `mb` unless the environment already has it; MS_PROGRESS=0. */
void fuzz_setup(int mb);

#endif
