/* ms_test.h: the tiny test harness every tests/test_<module>.c uses.
 *
 * MS_EXPECT(cond) records a failure with file:line and goes on; ms_expect_close compares
 * arrays with |got - ref| <= atol + rtol * |ref| and prints the largest difference when it
 * fails. main() ends with `return ms_test_summary();`, which prints "N passed, M failed"
 * and returns non-zero on any failure. Environment: MS_FIXTURES (committed fixtures),
 * MS_DATA (the repository root, which holds the real data in data/ and the encoder in
 * models/), MS_CLI (the medselect binary), MS_TMP (scratch directory).
 */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "medselect/arch.h"
#include "medselect/io.h"

extern int ms_test_passed, ms_test_failed;

void ms_test_expect(int ok, const char *file, int line, const char *what);
#define MS_EXPECT(cond) ms_test_expect((cond) != 0, __FILE__, __LINE__, #cond)

/* Returns 1 when every |got[i] - ref[i]| <= atol + rtol * |ref[i]|; otherwise prints `what`,
 * the index of the largest violation, both values and the difference, and returns 0. Counts
 * as one check. */
int ms_expect_close_f(const char *what, const float *got, const float *ref, size_t n,
                      double atol, double rtol);
int ms_expect_close_d(const char *what, const double *got, const double *ref, size_t n,
                      double atol, double rtol);
/* Relative error max|got-ref| / max|ref| <= tol (the whole-tensor form used for gradient
 * parity). */
int ms_expect_relerr_f(const char *what, const float *got, const float *ref, size_t n, double tol);

/* Paths: "$MS_FIXTURES/name", "$MS_DATA/name" (e.g. "data/nih1000/labels.csv",
 * "models/cxr-simclr-resnet18-64"), "$MS_TMP/name" (MS_TMP is created).
 * Return a static buffer per call site rotation (8 slots). */
const char *ms_fixture(const char *name);
const char *ms_data(const char *name);
const char *ms_tmp(const char *name);
/* The older names of ms_data: the data used to live outside the repository. */
const char *ms_shared(const char *name);
int ms_shared_available(void); /* 1 when the shipped NIH data is readable (it always should be) */

/* Runs `$MS_CLI args` through the shell with stdout/stderr captured to files; returns the
 * exit code (or -1). *out / *err (if not NULL) receive malloc'd contents. */
int ms_run_cli(const char *args, char **out, char **err);
int ms_file_exists(const char *path);
/* A whole file as a NUL-terminated malloc'd buffer (NULL when unreadable); *len gets the
 * byte count when len is not NULL. */
char *ms_read_file(const char *path, size_t *len);
/* Writes a text file (aborts on failure). */
void ms_write_text(const char *path, const char *text);

/* The small synthetic meta-dataset the training tests share: 16-d embeddings, 400/200/50
 * positives and 300/150/50 normals in train/val/test (ms_synth_generate with those sizes);
 * fills the train and validation splits (the caller frees them), the test split is dropped. */
void ms_test_small_splits(ms_split *tr, ms_split *va);

/* Reads an NPY fixture (float32/float64/int64 -> double) into a malloc'd array;
 * shape[0..ndim) filled when shape != NULL. Aborts with a message if missing. */
double *ms_load_npy_d(const char *path, int *ndim, long shape[4]);

/* The same with the element count: all of it as doubles, or rounded to float32 (malloc'd;
 * *n gets the count when n is not NULL). */
double *ms_load_npy_all(const char *path, size_t *n);
float *ms_load_npy_f32(const char *path, size_t *n);

/* Q (D, D) row-major: a random orthogonal matrix (Gram-Schmidt of normal draws from the
 * stream (seed, 99, 0)), for invariance tests. */
void ms_random_orthogonal(double *Q, int D, uint64_t seed);

/* A selector architecture's batch of sampled draws (B pools of T items, k 3..7 per pool,
 * at most K) and its gradient: checks that picks, log-probabilities and gradients are
 * bitwise the same for 1 and 2 threads, and that most gradient entries are non-zero. */
void ms_expect_net_thread_independent(ms_net *net, int B, int T, int K);

int ms_test_summary(void);

#endif
