/* st_check: exits 0 when every file named is a complete safetensors file (the project's own
 * reader accepts it and its data section ends exactly where the last tensor ends), 1
 * otherwise, printing one line per bad file. Shell tests use it to tell a complete
 * checkpoint or training state from a partial one.
 *
 *   st_check FILE... */
#include <stdint.h>
#include <stdio.h>

#include "medselect/safetensors.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: st_check FILE...\n");
        return 2;
    }
    int bad = 0;
    for (int a = 1; a < argc; a++) {
        ms_st_file f;
        if (ms_st_read(&f, argv[a]) != MS_OK) {
            printf("%s\n", ms_last_error());
            bad = 1;
            continue;
        }
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f.buf[i];
        size_t end = 0;
        for (int i = 0; i < f.n; i++)
            if (f.tensors[i].end > end) end = f.tensors[i].end;
        if (8 + hlen + end != f.size) {
            printf("%s: %zu bytes, the header describes %llu\n", argv[a], f.size,
                   (unsigned long long)(8 + hlen + end));
            bad = 1;
        }
        ms_st_free(&f);
    }
    return bad;
}
