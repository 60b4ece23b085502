/* cmp_rows: compares selected rows of a reference matrix with a matrix medselect wrote, with
 * the project's own readers, so that shell tests need no Python on the test machine.
 *
 *   cmp_rows REF.npy GOT.(npy|hdf5) ROWS [RTOL]
 *
 * ROWS is a comma-separated list of reference row indices: GOT's row i must equal REF's row
 * ROWS[i]. Each row passes when max_j |got_ij - ref_ij| <= RTOL * max_j |ref_ij| (RTOL 2e-3 by
 * default, the tolerance of embeddings against PyTorch). Prints the largest relative error per
 * row; exits 0 when every row passes, 1 when one does not, 2 on unreadable input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/io.h"

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: cmp_rows REF.npy GOT.(npy|hdf5) ROWS [RTOL]\n");
        return 2;
    }
    double rtol = argc == 5 ? atof(argv[4]) : 2e-3;
    float *ref = NULL, *got = NULL;
    int rr, rc, gr, gc;
    if (ms_matrix_read(argv[1], &ref, &rr, &rc) != MS_OK || ms_matrix_read(argv[2], &got, &gr, &gc) != MS_OK) {
        fprintf(stderr, "cmp_rows: %s\n", ms_last_error());
        free(ref);
        return 2;
    }
    int status = 0, n = 0;
    for (const char *p = argv[3]; *p; n++) {
        char *end;
        int r = (int)strtol(p, &end, 10);
        if (end == p || (*end && *end != ',')) r = -1; /* not a number: reported below */
        p = *end == ',' ? end + 1 : (end == p ? p + strlen(p) : end);
        if (r < 0 || r >= rr || n >= gr || gc != rc) {
            fprintf(stderr, "cmp_rows: shape mismatch: ref (%d, %d), got (%d, %d), row %d -> %d\n", rr, rc, gr, gc, r, n);
            status = 1;
            break;
        }
        double diff = 0, scale = 0;
        for (int j = 0; j < rc; j++) {
            double d = fabs((double)got[(size_t)n * gc + j] - ref[(size_t)r * rc + j]);
            if (!(d <= diff)) diff = d; /* NaN counts as the largest */
            if (fabs(ref[(size_t)r * rc + j]) > scale) scale = fabs(ref[(size_t)r * rc + j]);
        }
        double err = scale > 0 ? diff / scale : diff;
        printf("row %d (ref %d): max relative error %.3g\n", n, r, err);
        if (!(err <= rtol)) status = 1;
    }
    if (status == 0 && n != gr) {
        fprintf(stderr, "cmp_rows: got has %d rows, %d compared\n", gr, n);
        status = 1;
    }
    free(ref);
    free(got);
    return status;
}
